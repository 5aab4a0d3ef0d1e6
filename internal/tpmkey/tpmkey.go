// Package tpmkey keeps the evidence signing key in a TPM 2.0: an ECDSA P-256 primary key
// under the owner hierarchy, created inside the TPM (sensitiveDataOrigin) and bound to it and
// its parent (fixedTPM, fixedParent), so its private part never leaves the TPM and cannot be
// duplicated. A primary key is derived from the hierarchy's seed and its template, so the same
// label gives the same key again on the same TPM: nothing but the label and the public key is
// stored on disk. The key signs through TPM2_Sign (ECDSA, SHA-256) as a sigstore
// SignerVerifier, so bundles it signs verify like any other.
package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/sigstore/sigstore/pkg/signature"
)

// DefaultDevice is the kernel's TPM resource manager on Linux.
const DefaultDevice = "/dev/tpmrm0"

// Key is a signing key held by a TPM.
type Key struct {
	mu     sync.Mutex
	tpm    transport.TPMCloser
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    *ecdsa.PublicKey
	verify signature.Verifier
	// Device and Label say which TPM and which of its keys this is.
	Device, Label string
}

// Template is the public template of the key for label: what the TPM derives the key from,
// and the attributes that keep it inside (fixedTPM, fixedParent, sensitiveDataOrigin).
func Template(label string) tpm2.TPMTPublic {
	unique := sha256.Sum256([]byte("sourceos.dev/agent-machine/evidence-key\n" + label))
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: unique[:]},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// Load opens the TPM at device (a character device such as /dev/tpmrm0, or the Unix socket
// of a TPM emulator such as swtpm) and makes the key for label in it.
func Load(device, label string) (*Key, error) {
	t, err := open(device)
	if err != nil {
		return nil, fmt.Errorf("open the TPM %s: %w", device, err)
	}
	k, err := loadOn(t, label)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("the TPM %s: %w", device, err)
	}
	k.Device = device
	return k, nil
}

func loadOn(t transport.TPMCloser, label string) (*Key, error) {
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(Template(label))}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create the key: %w", err)
	}
	out, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	parms, err := out.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	point, err := out.Unique.ECC()
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.ECDSAPub(parms, point)
	if err != nil {
		return nil, err
	}
	v, err := signature.LoadECDSAVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &Key{tpm: t, handle: rsp.ObjectHandle, name: rsp.Name, pub: pub, verify: v, Label: label}, nil
}

// Close flushes the key from the TPM and closes it.
func (k *Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ferr := tpm2.FlushContext{FlushHandle: k.handle}.Execute(k.tpm)
	return errors.Join(ferr, k.tpm.Close())
}

// PublicKey is the key's public half.
func (k *Key) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) { return k.pub, nil }

// SignMessage hashes the message with SHA-256 and has the TPM sign the digest; the
// signature is ASN.1 DER, as for a file key.
func (k *Key) SignMessage(message io.Reader, _ ...signature.SignOption) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, message); err != nil {
		return nil, err
	}
	return k.SignDigest(h.Sum(nil))
}

// SignDigest has the TPM sign a SHA-256 digest.
func (k *Key) SignDigest(digest []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.NamedHandle{Handle: k.handle, Name: k.name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
	}.Execute(k.tpm)
	if err != nil {
		return nil, fmt.Errorf("the TPM did not sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// VerifySignature checks a signature with the key's public half.
func (k *Key) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	return k.verify.VerifySignature(sig, message, opts...)
}

var _ signature.SignerVerifier = (*Key)(nil)

// Attributes are the key's object attributes as the TPM reports them (TPM2_ReadPublic).
func (k *Key) Attributes() (tpm2.TPMAObject, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rsp, err := tpm2.ReadPublic{ObjectHandle: k.handle}.Execute(k.tpm)
	if err != nil {
		return tpm2.TPMAObject{}, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return tpm2.TPMAObject{}, err
	}
	return pub.ObjectAttributes, nil
}

// Duplicate asks the TPM to export the key under a new parent (TPM2_Duplicate, with no
// outer wrapping): it must refuse, as the key is fixedTPM and fixedParent. It exists to prove
// that, and returns what the TPM said.
func (k *Key) Duplicate() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := tpm2.Duplicate{
		ObjectHandle:    tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		NewParentHandle: tpm2.NamedHandle{Handle: tpm2.TPMRHNull},
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(k.tpm)
	return err
}
