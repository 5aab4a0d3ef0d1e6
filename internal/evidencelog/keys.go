package evidencelog

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// KindKey is a leaf that records a key rotation: from the key then in force (Previous) to a
// new one (Key). The checkpoint that first covers it is signed by both keys and kept in
// state.json's rotations, so each key vouches for the other: an auditor holding either one
// can follow the chain to the rest.
const KindKey = "key"

// Keys are the evidence keys a log was signed with, oldest first. Each signed the entries
// appended from the one after its rotation leaf (the first, from the start).
type Keys struct{ epochs []epoch }

type epoch struct {
	from uint64 // the first entry appended under this key
	id   string // hex DER SubjectPublicKeyInfo
	v    signature.Verifier
}

// At is the key that appended entry index: it signed that entry's bundle (for bundles the
// log recorded as they were written) and the checkpoint of size index+1.
func (k *Keys) At(index uint64) signature.Verifier {
	e := k.epochs[0]
	for _, next := range k.epochs[1:] {
		if next.from > index {
			break
		}
		e = next
	}
	return e.v
}

func (k *Keys) has(id string) bool {
	for _, e := range k.epochs {
		if e.id == id {
			return true
		}
	}
	return false
}

// signing is the key that signs a checkpoint of size n.
func (k *Keys) signing(n uint64) signature.Verifier {
	if n == 0 {
		return k.epochs[0].v
	}
	return k.At(n - 1)
}

// Fingerprints name the keys, oldest first, as `evidence key show` does.
func (k *Keys) Fingerprints() []string {
	out := make([]string, len(k.epochs))
	for i, e := range k.epochs {
		der, _ := hex.DecodeString(e.id)
		out[i] = fingerprintDER(der)
	}
	return out
}

// Fingerprint is a public key's SHA-256 over its DER form, shortened, for people to compare.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "unreadable"
	}
	return fingerprintDER(der)
}

func fingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// keyID is a key's hex DER SubjectPublicKeyInfo, as key leaves name it.
func keyID(v signature.Verifier) (string, error) {
	pub, err := v.PublicKey()
	if err != nil {
		return "", err
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(der), nil
}

func verifierOf(id string) (signature.Verifier, error) {
	der, err := hex.DecodeString(id)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	return signature.LoadVerifier(pub, crypto.SHA256)
}

// leafOfKey is the leaf of a rotation from the key previous to the key next.
func leafOfKey(previous, next string) []byte {
	return hasher.HashLeaf([]byte("sourceos.dev/agent-machine/key\n" + previous + "\n" + next + "\n"))
}

// buildKeys follows the rotations among the committed entries: each names the key in force
// before it, and its checkpoint (in rotations) is signed by both keys and commits to the log
// up to it. The key v the verifier trusts must be one of the chain. A log without
// rotations is signed by v alone.
func buildKeys(committed []Entry, rotations []string, origin string, v signature.Verifier) (*Keys, error) {
	vid, err := keyID(v)
	if err != nil {
		return nil, err
	}
	var rots []Entry
	for i, e := range committed {
		if e.Kind != KindKey {
			continue
		}
		// The index a rotation claims chooses its checkpoint and where its key takes over:
		// it must be its place (the leaf does not cover it).
		if e.Index != uint64(i) {
			return nil, fmt.Errorf("the rotation on line %d says it is entry %d", i+1, e.Index)
		}
		rots = append(rots, e)
	}
	if len(rots) == 0 {
		return &Keys{epochs: []epoch{{id: vid, v: v}}}, nil
	}
	k := &Keys{}
	first, err := verifierOf(rots[0].Previous)
	if err != nil {
		return nil, fmt.Errorf("the rotation at entry %d names a previous key that is not a public key", rots[0].Index)
	}
	k.epochs = append(k.epochs, epoch{id: rots[0].Previous, v: first})
	sizes := make([]uint64, len(rots))
	for i, e := range rots {
		if hex.EncodeToString(leafOfKey(e.Previous, e.Key)) != e.Leaf {
			return nil, fmt.Errorf("the rotation at entry %d was edited: its keys no longer make its leaf", e.Index)
		}
		if cur := k.epochs[len(k.epochs)-1]; e.Previous != cur.id {
			return nil, fmt.Errorf("the rotation at entry %d is from %s, not from the key then in force (%s)", e.Index, fingerprintID(e.Previous), fingerprintID(cur.id))
		}
		next, err := verifierOf(e.Key)
		if err != nil || k.has(e.Key) {
			// A key back in force would let whoever kept a retired key sign again.
			return nil, fmt.Errorf("the rotation at entry %d does not name a new public key (one never in force before)", e.Index)
		}
		k.epochs = append(k.epochs, epoch{from: e.Index + 1, id: e.Key, v: next})
		sizes[i] = e.Index + 1
	}
	roots := prefixRoots(committed, sizes...)
	for i, e := range rots {
		cp, err := openRotation(rotations, e.Index+1, k.epochs[i].v, k.epochs[i+1].v)
		if err != nil {
			return nil, fmt.Errorf("the rotation at entry %d: %w", e.Index, err)
		}
		if cp.Origin != origin || !bytes.Equal(roots[cp.Size], cp.Root) {
			return nil, fmt.Errorf("the rotation at entry %d: the checkpoint both keys signed is of another log, or the log's first %d entries no longer hash to it", e.Index, cp.Size)
		}
	}
	if k.has(vid) {
		return k, nil
	}
	return nil, fmt.Errorf("the log was signed by the keys %s, and this key (%s) is none of them", strings.Join(k.Fingerprints(), " → "), fingerprintID(vid))
}

func fingerprintID(id string) string {
	der, _ := hex.DecodeString(id)
	return fingerprintDER(der)
}

// openRotation finds, among the rotations' checkpoints, the one of size n and checks it is
// signed by both the key rotated from and the key rotated to.
func openRotation(rotations []string, n uint64, from, to signature.Verifier) (Checkpoint, error) {
	for _, signed := range rotations {
		body, _, _ := strings.Cut(signed, "\n\n")
		if c, err := parseBody(body + "\n"); err != nil || c.Size != n {
			continue
		}
		var sigs []note.Verifier
		for _, v := range []signature.Verifier{from, to} {
			nv, err := newNoteVerifier(strings.SplitN(signed, "\n", 2)[0], v)
			if err != nil {
				return Checkpoint{}, err
			}
			sigs = append(sigs, nv)
		}
		opened, err := note.Open([]byte(signed), note.VerifierList(sigs...))
		if err != nil {
			return Checkpoint{}, fmt.Errorf("its checkpoint: %w", describeNoteError(err))
		}
		signedBy := map[uint32]bool{}
		for _, s := range opened.Sigs {
			signedBy[s.Hash] = true
		}
		for _, nv := range sigs {
			if !signedBy[nv.KeyHash()] {
				return Checkpoint{}, errors.New("its checkpoint is not signed by both the key rotated from and the key rotated to")
			}
		}
		return parseBody(opened.Text)
	}
	return Checkpoint{}, fmt.Errorf("%s keeps no checkpoint of size %d signed by both keys (its rotations)", StateFile, n)
}

// Rotated is what Rotate did.
type Rotated struct {
	// Index is the rotation's entry (unless Already); Already says the log had been rotated to the new key
	// before (a rotation resumed after it stopped part-way).
	Index   uint64
	Already bool
	// Adopted counts the earlier bundles taken in when the rotation started the log.
	Adopted int
}

// Rotate records in the log of the evidence directory evDir that its key changes from
// from to to: a rotation leaf naming both, whose checkpoint both keys sign. Later appends
// must be signed by to. A directory whose log was never started has it started, adopting
// its earlier bundles that verify with from, so they stay provable under the old key.
// Rotating again to the same key does nothing.
func Rotate(evDir string, from, to signature.SignerVerifier) (*Rotated, error) {
	fromID, err := keyID(from)
	if err != nil {
		return nil, err
	}
	toID, err := keyID(to)
	if err != nil {
		return nil, err
	}
	if fromID == toID {
		return nil, errors.New("the new key is the key in force")
	}
	l, err := openLog(evDir)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	if err := l.load(to); err == nil && l.st.Key == toID {
		return &Rotated{Already: true}, nil
	}
	if err := l.load(from); err != nil {
		return nil, err
	}
	if l.st.Size > 0 {
		// The new key vouches for the log as it stands: it must verify in full under the
		// old one (the rotation may be because the old key leaked).
		res, err := Verify(evDir, from, VerifyOptions{})
		if err != nil {
			return nil, err
		}
		if !res.OK() {
			return nil, fmt.Errorf("the log does not verify, and the new key would vouch for it: %s (see `evidence log verify`)", res.Problems[0])
		}
	}
	var batch []Entry
	if l.st.Size == 0 {
		batch = adoptable(evDir, "", from)
	}
	batch = append(batch, Entry{Kind: KindKey, Previous: fromID, Key: toID, Leaf: hex.EncodeToString(leafOfKey(fromID, toID))})
	inc, err := l.commit(batch, to, from)
	if err != nil {
		return nil, err
	}
	return &Rotated{Index: inc.Index, Adopted: len(batch) - 1}, nil
}
