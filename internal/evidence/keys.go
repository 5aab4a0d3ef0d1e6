// Package evidence writes and verifies a session's evidence bundle: an in-toto Statement in
// a DSSE envelope, signed with sigstore/sigstore, stored both as a Sigstore bundle v0.3 and
// as the bare envelope, beside the artifacts it references by SHA-256.
package evidence

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
)

// encryptedType is the PEM type cosign uses for its encrypted private keys.
const encryptedType = "ENCRYPTED SIGSTORE PRIVATE KEY"

// Key is the signing key.
type Key struct {
	Signer    signature.SignerVerifier
	PublicPEM []byte
	Path      string
	Created   bool
	// Close releases a key held by a device (a TPM); nil for a file key.
	Close func() error
}

// NewKey wraps a signer held elsewhere (a TPM) as the evidence key; where names it.
func NewKey(s signature.SignerVerifier, where string) (*Key, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, err
	}
	return &Key{Signer: s, PublicPEM: pubPEM, Path: where}, nil
}

// LoadOrCreateKey loads the private key at privPath, or creates an ECDSA P-256 key there
// (PKCS#8 PEM, mode 0600; encrypted the way cosign reads when password is not empty) with
// its PEM public key at pubPath.
func LoadOrCreateKey(privPath, pubPath string, password []byte) (*Key, error) {
	k, err := LoadKey(privPath, password)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createKey(privPath, pubPath, password)
	case err != nil:
		return nil, err
	}
	// The public key beside it is for verifiers: made again when it was deleted.
	if _, err := os.Lstat(pubPath); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.Write(pubPath, k.PublicPEM, 0o644, atomicfile.Options{NoClobber: true}); err != nil && !errors.Is(err, atomicfile.ErrExists) {
			return nil, &KeyError{Path: pubPath, Err: err}
		}
	}
	return k, nil
}

// LoadKey reads the key at privPath and writes nothing (a dry run's check); an error
// wrapping fs.ErrNotExist when there is none.
func LoadKey(privPath string, password []byte) (*Key, error) {
	k, err := loadKey(privPath, password)
	if errors.Is(err, fs.ErrNotExist) {
		if target, lerr := os.Readlink(privPath); lerr == nil {
			return nil, &KeyError{Path: privPath, Err: fmt.Errorf("is a symbolic link to %s, which does not exist; restore the key there, or remove the link to have a new key made", target)}
		}
	}
	return k, err
}

// loadKey reads the key at privPath; an error wrapping fs.ErrNotExist when there is none.
func loadKey(privPath string, password []byte) (*Key, error) {
	data, err := os.ReadFile(privPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err != nil:
		return nil, &KeyError{Path: privPath, Err: err}
	}
	priv, err := decodePrivate(data, password)
	if err != nil {
		return nil, &KeyError{Path: privPath, Err: err}
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return nil, &KeyError{Path: privPath, Err: fmt.Errorf("unsupported key type %T: an ECDSA key is required", priv)}
	}
	return newKey(ec, privPath, false)
}

// KeyError says the signing key cannot be used.
type KeyError struct {
	Path string
	Err  error
}

func (e *KeyError) Error() string { return fmt.Sprintf("signing key %s: %v", e.Path, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

func decodePrivate(data, password []byte) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	if block.Type == encryptedType {
		if len(password) == 0 {
			return nil, errors.New("the key is encrypted: set SOURCEOSCTL_KEY_PASSWORD")
		}
		return cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.StaticPasswordFunc(password))
	}
	return cryptoutils.UnmarshalPEMToPrivateKey(data, nil)
}

func createKey(privPath, pubPath string, password []byte) (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var privPEM []byte
	if len(password) > 0 {
		der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
		if err != nil {
			return nil, err
		}
		privPEM = pem.EncodeToMemory(&pem.Block{Type: encryptedType, Bytes: der})
	} else if privPEM, err = cryptoutils.MarshalPrivateKeyToPEM(priv); err != nil {
		return nil, err
	}
	k, err := newKey(priv, privPath, true)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(privPath, privPEM, 0o600, atomicfile.Options{NoClobber: true}); errors.Is(err, atomicfile.ErrExists) {
		// Another session created the key at the same moment: use that one (once: a name
		// that exists but cannot be read as a file, such as a dangling link, is an error).
		k, err := loadKey(privPath, password)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &KeyError{Path: privPath, Err: errors.New("exists but cannot be read (a dangling symbolic link?)")}
		}
		return k, err
	} else if err != nil {
		return nil, &KeyError{Path: privPath, Err: err}
	}
	if err := atomicfile.Write(pubPath, k.PublicPEM, 0o644, atomicfile.Options{}); err != nil {
		return nil, &KeyError{Path: pubPath, Err: err}
	}
	return k, nil
}

func newKey(priv *ecdsa.PrivateKey, path string, created bool) (*Key, error) {
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Key{Signer: sv, PublicPEM: pubPEM, Path: path, Created: created}, nil
}

// LoadPublicKey reads a PEM public key for verification.
func LoadPublicKey(path string) (signature.Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyError{Path: path, Err: err}
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, &KeyError{Path: path, Err: err}
	}
	return signature.LoadVerifier(pub, crypto.SHA256)
}

// PublicKeyOfFile is the PEM public key of the private key file at path (opened with
// password when it is encrypted).
func PublicKeyOfFile(path string, password []byte) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyError{Path: path, Err: err}
	}
	priv, err := decodePrivate(data, password)
	if err != nil {
		return nil, &KeyError{Path: path, Err: err}
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, &KeyError{Path: path, Err: fmt.Errorf("unsupported key type %T", priv)}
	}
	return cryptoutils.MarshalPublicKeyToPEM(signer.Public())
}
