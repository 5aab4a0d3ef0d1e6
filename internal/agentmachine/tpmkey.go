package agentmachine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/tpmkey"
)

// TPMKeyRef names a TPM-held evidence key: the TPM it lives in and the label it is derived
// from there (the key itself is never on disk).
type TPMKeyRef struct {
	Device string `json:"device"`
	Label  string `json:"label"`
}

// ReadTPMKeyRef reads keys/evidence.tpm; found is false when there is none.
func (d Dirs) ReadTPMKeyRef() (ref TPMKeyRef, found bool, err error) {
	raw, err := os.ReadFile(d.TPMKeyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return ref, false, nil
	} else if err != nil {
		return ref, false, err
	}
	if err := json.Unmarshal(raw, &ref); err != nil || ref.Device == "" || ref.Label == "" {
		return ref, true, fmt.Errorf("%s does not name a TPM device and a key label", d.TPMKeyPath())
	}
	return ref, true, nil
}

// LoadTPMKey opens the TPM-held evidence key ref names.
func LoadTPMKey(ref TPMKeyRef) (*evidence.Key, error) {
	k, err := tpmkey.Load(ref.Device, ref.Label)
	if err != nil {
		return nil, err
	}
	key, err := evidence.NewKey(k, "tpm:"+ref.Device+"#"+ref.Label)
	if err != nil {
		k.Close()
		return nil, err
	}
	key.Close = k.Close
	return key, nil
}

// CreateTPMKey makes a new evidence key in the TPM at device and makes it this host's key:
// keys/evidence.tpm names it and keys/evidence.pub holds its public key. It refuses when
// this host already has an evidence key: RotateKey replaces one.
func (d Dirs) CreateTPMKey(device string) (*evidence.Key, error) {
	priv, pub := d.SigningKeyPaths()
	for _, p := range []string{priv, d.TPMKeyPath()} {
		if _, err := os.Stat(p); err == nil {
			return nil, &InputError{Err: fmt.Errorf("this host already has an evidence key (%s)", p),
				Fix: "`evidence key rotate --tpm` replaces it with a TPM-held key, recording the change in the session logs"}
		}
	}
	ref, err := newTPMKeyRef(device)
	if err != nil {
		return nil, err
	}
	key, err := LoadTPMKey(ref)
	if err != nil {
		return nil, err
	}
	if err := ref.write(d.TPMKeyPath()); err != nil {
		key.Close()
		return nil, err
	}
	if err := atomicfile.Write(pub, key.PublicPEM, 0o644, atomicfile.Options{}); err != nil {
		key.Close()
		return nil, err
	}
	return key, nil
}

// newTPMKeyRef names a new key in the TPM at device: a random label.
func newTPMKeyRef(device string) (TPMKeyRef, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return TPMKeyRef{}, err
	}
	return TPMKeyRef{Device: device, Label: "evidence-" + hex.EncodeToString(id[:])}, nil
}

// write stores the reference at path, never over another.
func (ref TPMKeyRef) write(path string) error {
	raw, _ := json.MarshalIndent(ref, "", "  ")
	return atomicfile.Write(path, append(raw, '\n'), 0o600, atomicfile.Options{NoClobber: true})
}
