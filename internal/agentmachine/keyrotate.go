package agentmachine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
)

// RotateKeyOptions choose the new evidence key and the session logs that record the change.
type RotateKeyOptions struct {
	TPM    bool   // make the new key in a TPM 2.0 (else a file key)
	Device string // the TPM, with TPM
	// Logs are the evidence directories whose session logs record the rotation.
	Logs []string
	// Password encrypts a new file key (SOURCEOSCTL_KEY_PASSWORD), and opens the old one.
	Password []byte
}

// KeyRotation is what RotateKey did.
type KeyRotation struct {
	From, To string // fingerprints
	// Previous is where the old public key is kept, for the bundles it signed.
	Previous string
	Logs     []RotatedLog
	// Finished says an earlier rotation that stopped part-way was completed.
	Finished bool
}

// RotatedLog is one session log's part in a rotation.
type RotatedLog struct {
	Dir string
	*evidencelog.Rotated
	// Skipped says why a directory's log was left alone (nothing was ever signed there).
	Skipped string
}

// PreviousKeysDir keeps the public keys this host signed with before its last rotations.
func (d Dirs) PreviousKeysDir() string { return filepath.Join(d.Config, "keys", "previous") }

// pendingKeyPaths are where a new key waits while the logs record the rotation to it.
func (d Dirs) pendingKeyPaths() (private, public, tpm string) {
	priv, pub := d.SigningKeyPaths()
	return priv + ".new", pub + ".new", d.TPMKeyPath() + ".new"
}

// RotateKey replaces this host's evidence key with a new one (a file key, or one in a TPM):
// each session log named records the rotation (a leaf both keys sign), the old public key is
// kept in keys/previous for the bundles it signed, and the old private key file is deleted
// (a TPM-held one is no longer named). Until every log has recorded it, nothing is replaced:
// a rotation that stops part-way is finished by running it again.
func (d Dirs) RotateKey(opts RotateKeyOptions) (*KeyRotation, error) {
	finished, err := d.finishInterruptedRotation(opts.Password)
	if err != nil || finished {
		// A finished rotation is the one asked for again: not a second one.
		return &KeyRotation{Finished: true}, err
	}
	old, err := d.loadHostKey(opts.Password)
	if err != nil {
		return nil, err
	}
	defer closeKey(old)
	next, err := d.pendingKey(opts)
	if err != nil {
		return nil, err
	}
	defer closeKey(next)
	out := &KeyRotation{From: FingerprintPEM(old.PublicPEM), To: FingerprintPEM(next.PublicPEM)}
	for _, dir := range opts.Logs {
		r, skipped, err := rotateLog(dir, old, next)
		if err != nil {
			return nil, &HintError{Err: fmt.Errorf("the session log of %s cannot record the rotation, so the key was not changed: %w", dir, err),
				Fix: "fix what is named and run `evidence key rotate` again (it resumes); or leave that directory out with its own profile's evidence.dir changed"}
		}
		out.Logs = append(out.Logs, RotatedLog{Dir: dir, Rotated: r, Skipped: skipped})
	}
	if out.Previous, err = d.keepPreviousKey(old.PublicPEM); err != nil {
		return nil, err
	}
	return out, d.installPendingKey(opts.TPM, next)
}

func closeKey(k *evidence.Key) {
	if k.Close != nil {
		k.Close()
	}
}

// FingerprintPEM is a PEM public key's fingerprint: SHA-256 over its DER form, shortened,
// for people to compare.
func FingerprintPEM(pubPEM []byte) string {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return "unreadable"
	}
	return evidencelog.Fingerprint(pub)
}

// loadHostKey opens this host's evidence key without creating one.
func (d Dirs) loadHostKey(password []byte) (*evidence.Key, error) {
	ref, found, err := d.ReadTPMKeyRef()
	if err != nil {
		return nil, &InputError{Err: err}
	}
	if found {
		key, err := LoadTPMKey(ref)
		if err != nil {
			return nil, &HintError{Err: fmt.Errorf("the evidence key held by the TPM cannot be used: %w", err), Fix: "check that " + ref.Device + " is there and yours to use"}
		}
		return key, nil
	}
	priv, pub := d.SigningKeyPaths()
	if _, err := os.Stat(priv); errors.Is(err, fs.ErrNotExist) {
		return nil, &InputError{Err: errors.New("this host has no evidence key yet: there is nothing to rotate"),
			Fix: "the first session makes a file key; `evidence key create --tpm` makes one in a TPM"}
	}
	return evidence.LoadOrCreateKey(priv, pub, password)
}

// pendingKey makes the new key, or opens the one an interrupted rotation made.
func (d Dirs) pendingKey(opts RotateKeyOptions) (*evidence.Key, error) {
	priv, pub, tpm := d.pendingKeyPaths()
	pendingFile, pendingTPM := exists(priv), exists(tpm)
	switch {
	case pendingFile && opts.TPM:
		return nil, &InputError{Err: fmt.Errorf("a rotation to a file key was started (%s)", priv), Fix: "finish it with `evidence key rotate` (no --tpm), or remove " + priv + " and " + pub}
	case pendingTPM && !opts.TPM:
		return nil, &InputError{Err: fmt.Errorf("a rotation to a TPM-held key was started (%s)", tpm), Fix: "finish it with `evidence key rotate --tpm`, or remove " + tpm}
	case !opts.TPM:
		return evidence.LoadOrCreateKey(priv, pub, opts.Password)
	}
	ref := TPMKeyRef{Device: opts.Device}
	if pendingTPM {
		raw, err := os.ReadFile(tpm)
		if err != nil || json.Unmarshal(raw, &ref) != nil || ref.Label == "" {
			return nil, &InputError{Err: fmt.Errorf("%s does not name a TPM device and a key label", tpm), Fix: "remove it and run `evidence key rotate --tpm` again"}
		}
	} else {
		var err error
		if ref, err = newTPMKeyRef(opts.Device); err != nil {
			return nil, err
		}
		if err := ref.write(tpm); err != nil {
			return nil, err
		}
	}
	return LoadTPMKey(ref)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// rotateLog records the rotation in the log of dir; a directory where nothing was ever
// signed is skipped.
func rotateLog(dir string, old, next *evidence.Key) (*evidencelog.Rotated, string, error) {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "no such directory", nil
	case err != nil:
		return nil, "", err
	case !st.IsDir():
		return nil, "not a directory", nil
	}
	if owner, _ := PathOwner(dir); runtime.GOOS != "windows" && owner != os.Getuid() {
		// A directory someone else made (the fallback in a shared temporary directory can
		// be planted) is not this host's evidence: nothing is signed into it.
		return nil, fmt.Sprintf("owned by uid %d, not by you", owner), nil
	}
	bundles, _ := evidence.List(dir)
	if len(bundles) == 0 && !exists(filepath.Join(dir, evidencelog.Dir, evidencelog.StateFile)) {
		return nil, "no bundles and no session log", nil
	}
	r, err := evidencelog.Rotate(dir, old.Signer, next.Signer)
	return r, "", err
}

// keepPreviousKey writes the old public key to keys/previous, named by its fingerprint.
func (d Dirs) keepPreviousKey(pubPEM []byte) (string, error) {
	if err := os.MkdirAll(d.PreviousKeysDir(), 0o700); err != nil {
		return "", err
	}
	path := d.previousKeyPath(pubPEM)
	return path, atomicfile.Write(path, pubPEM, 0o644, atomicfile.Options{})
}

// previousKeyPath is where keys/previous keeps a public key: named by its fingerprint.
func (d Dirs) previousKeyPath(pubPEM []byte) string {
	return filepath.Join(d.PreviousKeysDir(), strings.ReplaceAll(FingerprintPEM(pubPEM), ":", "-")+".pub")
}

// installPendingKey makes the new key this host's. The public key goes first: a rotation
// stopped before the private key is in place resumes with the same new key.
func (d Dirs) installPendingKey(tpm bool, next *evidence.Key) error {
	priv, pub := d.SigningKeyPaths()
	pendingPriv, pendingPub, pendingTPM := d.pendingKeyPaths()
	if err := atomicfile.Write(pub, next.PublicPEM, 0o644, atomicfile.Options{}); err != nil {
		return err
	}
	if !tpm {
		if err := os.Rename(pendingPriv, priv); err != nil {
			return err
		}
		os.Remove(pendingPub)
		return removeIfExists(d.TPMKeyPath())
	}
	if err := os.Rename(pendingTPM, d.TPMKeyPath()); err != nil {
		return err
	}
	return removeIfExists(priv)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// finishInterruptedRotation completes a rotation that stopped with both a TPM-held key and a
// file key in place (`evidence key create --tpm` refuses when there is a file key, so only
// an interrupted rotation leaves both). The new key's public key was written first: the one
// of the two that matches keys/evidence.pub stays, and the other — kept in keys/previous —
// goes.
func (d Dirs) finishInterruptedRotation(password []byte) (bool, error) {
	priv, pub := d.SigningKeyPaths()
	if !exists(d.TPMKeyPath()) || !exists(priv) {
		return false, nil
	}
	filePub, err := evidence.PublicKeyOfFile(priv, password)
	hostPub, _ := os.ReadFile(pub)
	switch {
	case err == nil && exists(d.previousKeyPath(filePub)):
		return true, os.Remove(priv) // rotated to the TPM
	case err == nil && FingerprintPEM(filePub) == FingerprintPEM(hostPub):
		return true, os.Remove(d.TPMKeyPath()) // rotated to a file key
	}
	return false, &InputError{Err: fmt.Errorf("this host has both a TPM-held evidence key (%s) and a file key (%s)", d.TPMKeyPath(), priv),
		Fix: "sessions sign with the TPM-held key; move " + priv + " aside"}
}
