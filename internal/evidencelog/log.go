// Package evidencelog keeps an append-only Merkle log of the evidence bundles in an
// evidence directory, in the order sessions ended: RFC 6962 hashing
// (github.com/transparency-dev/merkle), a signed C2SP checkpoint after each append, and each
// bundle's inclusion proof stored beside its files. An auditor who keeps a checkpoint can
// later prove that the log still holds everything it held then.
//
// On disk, in EVIDENCE/log/:
//
//	entries.jsonl  one line per leaf, appended only: {"index","kind":"bundle","bundle","sha256","leaf"}
//	               for a session's bundle, {"index","kind":"key","previous","key","leaf"} for a
//	               key rotation (keys.go)
//	state.json     the log's size, the byte length of entries.jsonl it covers, the compact
//	               range (the O(log n) hashes of the tree's right edge) and the signed
//	               checkpoint; replacing this file is the commit point of an append. After a
//	               rotation, also the key in force and each rotation's doubly signed checkpoint
//	lock           held while appending, so concurrent sessions append one at a time
//
// and in each bundle directory, log-inclusion.json (the leaf's index, the audit path and
// the checkpoint it proves against).
package evidencelog

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/safeopen"
)

// Files of the log.
const (
	Dir           = "log"
	EntriesFile   = "entries.jsonl"
	StateFile     = "state.json"
	LockFile      = "lock"
	InclusionFile = evidence.InclusionFile

	// KindBundle is a leaf for one session's bundle.
	KindBundle = "bundle"
	// OriginPrefix starts every log's origin; a random suffix tells logs apart.
	OriginPrefix = "sourceos.dev/agent-machine/log/"
)

var hasher = rfc6962.DefaultHasher

var factory = &compact.RangeFactory{Hash: hasher.HashChildren}

// Entry is one line of entries.jsonl.
type Entry struct {
	Index  uint64 `json:"index"`
	Kind   string `json:"kind"`
	Bundle string `json:"bundle,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // of the bundle's attestation.sigstore.json
	// Previous and Key, for a rotation (KindKey): the hex DER public keys rotated from and to.
	Previous string `json:"previous,omitempty"`
	Key      string `json:"key,omitempty"`
	Leaf     string `json:"leaf"` // hex RFC 6962 leaf hash of the record of Bundle and SHA256 (or of the keys)
	// Adopted marks a bundle that was in the directory before its log was started.
	Adopted bool `json:"adopted,omitempty"`
}

// state is state.json.
type state struct {
	Version    int      `json:"version"`
	Origin     string   `json:"origin"`
	Size       uint64   `json:"size"`
	Offset     int64    `json:"offset"` // bytes of entries.jsonl the checkpoint covers
	Range      []string `json:"range"`  // hex hashes of the compact range [0, size)
	Checkpoint string   `json:"checkpoint"`
	// Key is the key in force since the last rotation (hex DER), and Rotations the
	// checkpoints each rotation's two keys signed; both empty until the first rotation.
	Key       string   `json:"key,omitempty"`
	Rotations []string `json:"rotations,omitempty"`
}

// Inclusion is log-inclusion.json: the proof that a bundle is leaf Index of the log whose
// signed checkpoint is Checkpoint.
type Inclusion struct {
	Index      uint64   `json:"index"`
	TreeSize   uint64   `json:"treeSize"`
	LeafHash   string   `json:"leafHash"`
	Hashes     []string `json:"hashes"` // the audit path, leaf level first (RFC 6962)
	Checkpoint string   `json:"checkpoint"`
}

// LeafHash is the RFC 6962 leaf hash of a bundle: of a record naming its directory and the
// SHA-256 of its Sigstore bundle file (which holds the signed statement and its signature),
// so another bundle — even a validly signed one — or the same bundle under another name has
// another leaf.
func LeafHash(bundleDir string) ([]byte, error) {
	digest, err := bundleDigest(bundleDir)
	if err != nil {
		return nil, err
	}
	return leafOf(filepath.Base(bundleDir), digest), nil
}

func bundleDigest(bundleDir string) ([]byte, error) {
	data, err := safeopen.ReadFile(filepath.Join(bundleDir, evidence.BundleFile), maxBundleFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return sum[:], nil
}

// Bounds on what the log reads: whoever can write the evidence directory must not make a
// verification block (a FIFO) or exhaust memory (a huge file or line).
const (
	maxBundleFile = 64 << 20 // a bundle's statement and signature
	maxSmallFile  = 1 << 20  // state.json, an inclusion proof
	maxEntryLine  = 64 << 10 // one line of entries.jsonl
)

// realDir checks that path is a directory itself, not a symbolic link to one: the log writes
// into it.
func realDir(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory (%s)", path, st.Mode().Type())
	}
	return nil
}

// leafOf is the leaf of the bundle named name whose bundle file has the digest: the Merkle
// tree commits to both, so the log's entries cannot be renamed without changing its root.
func leafOf(name string, digest []byte) []byte {
	return hasher.HashLeaf([]byte("sourceos.dev/agent-machine/bundle\n" + name + "\n" + hex.EncodeToString(digest) + "\n"))
}

// Appended is what Append did.
type Appended struct {
	*Inclusion
	// Adopted counts the bundles already in the directory when its log was started, taken in
	// before this one (those that verify with the key, oldest first).
	Adopted int
}

// Append adds the bundle directory bundleDir (inside the evidence directory) to that
// directory's log, signs the new checkpoint with key and writes the bundle's inclusion
// proof. Appends are serialised by the log's lock. Its cost does not grow with the log: it
// reads and writes only the compact range. The first append to a directory that already
// holds bundles (written before there was a log) adopts those that verify with the key.
func Append(bundleDir string, key signature.SignerVerifier) (*Appended, error) {
	return AppendWritten(bundleDir, nil, key)
}

// AppendWritten is Append for a bundle just written whose bundle file had the SHA-256
// written (evidence.WriteBundle's): a bundle changed between its writing and its logging is
// refused rather than logged as the changed one.
func AppendWritten(bundleDir string, written []byte, key signature.SignerVerifier) (*Appended, error) {
	evDir, name := filepath.Dir(bundleDir), filepath.Base(bundleDir)
	digest, err := bundleDigest(bundleDir)
	if err != nil {
		return nil, fmt.Errorf("read the bundle: %w", err)
	}
	if written != nil && !bytes.Equal(digest, written) {
		return nil, fmt.Errorf("%s changed between its writing and its logging: not logged", filepath.Join(bundleDir, evidence.BundleFile))
	}
	leaf := leafOf(name, digest)
	if err := realDir(bundleDir); err != nil {
		return nil, err
	}
	l, err := openLog(evDir)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	if err := l.load(key); err != nil {
		return nil, err
	}
	if inc := adoptedAlready(bundleDir, leaf, l.st.Origin); inc != nil {
		// Another session started this log while this bundle waited for the lock, and
		// adopted it with the directory's earlier bundles.
		return &Appended{Inclusion: inc}, nil
	}
	var batch []Entry
	if l.st.Size == 0 {
		batch = adoptable(evDir, name, key)
	}
	batch = append(batch, Entry{Kind: KindBundle, Bundle: name, SHA256: hex.EncodeToString(digest), Leaf: hex.EncodeToString(leaf)})
	inc, err := l.commit(batch, key)
	if err != nil {
		return nil, err
	}
	if err := writeInclusion(bundleDir, inc); err != nil {
		return nil, fmt.Errorf("the bundle is in the log (leaf %d) but its inclusion proof was not written: %w", inc.Index, err)
	}
	return &Appended{Inclusion: inc, Adopted: len(batch) - 1}, nil
}

// openedLog is an evidence directory's log, locked for an append.
type openedLog struct {
	evDir, dir string
	unlock     func()
	st         *state
	rng        *compact.Range
}

// openLog makes and locks the log of the evidence directory evDir.
func openLog(evDir string) (*openedLog, error) {
	logDir := filepath.Join(evDir, Dir)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	if err := realDir(logDir); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(logDir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("lock the session log: %w", err)
	}
	return &openedLog{evDir: evDir, dir: logDir, unlock: unlock}, nil
}

// load reads the log's state, which key must have signed.
func (l *openedLog) load(key signature.Verifier) (err error) {
	l.st, l.rng, err = loadState(l.dir, key)
	return err
}

// commit appends the batch of entries, signs the new checkpoint with the signers, writes
// the entries and then the state (the commit point), and writes the inclusion proofs of
// any adopted bundles in the batch. It returns the last entry's inclusion proof. A batch
// ending in a rotation keeps its checkpoint among the rotations and makes the rotated-to key
// the log's.
func (l *openedLog) commit(batch []Entry, signers ...signature.SignerVerifier) (*Inclusion, error) {
	st, rng := l.st, l.rng
	start := rng.End()
	var lines []byte
	var path [][]byte
	leaves := make([][]byte, len(batch))
	for i := range batch {
		if i == len(batch)-1 {
			// The audit path of the new last leaf is the range's hashes, smallest subtree first.
			for j := len(rng.Hashes()) - 1; j >= 0; j-- {
				path = append(path, rng.Hashes()[j])
			}
		}
		batch[i].Index = rng.End()
		leaves[i], _ = hex.DecodeString(batch[i].Leaf)
		if err := rng.Append(leaves[i], nil); err != nil {
			return nil, err
		}
		line, _ := json.Marshal(batch[i])
		lines = append(append(lines, line...), '\n')
	}
	index, size := rng.End()-1, rng.End()
	root, err := rootOf(rng)
	if err != nil {
		return nil, err
	}
	last := leaves[len(leaves)-1]
	if err := proof.VerifyInclusion(hasher, index, size, last, path, root); err != nil {
		return nil, fmt.Errorf("the new leaf's proof does not verify (a defect): %w", err)
	}
	signed, err := signCheckpoint(Checkpoint{Origin: st.Origin, Size: size, Root: root}, signers...)
	if err != nil {
		return nil, err
	}
	if err := writeEntry(filepath.Join(l.dir, EntriesFile), st.Offset, lines); err != nil {
		return nil, err
	}
	st.Size, st.Offset, st.Checkpoint = size, st.Offset+int64(len(lines)), signed
	st.Range = hexAll(rng.Hashes())
	if e := batch[len(batch)-1]; e.Kind == KindKey {
		st.Key, st.Rotations = e.Key, append(st.Rotations, signed)
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.Write(filepath.Join(l.dir, StateFile), append(raw, '\n'), 0o600, atomicfile.Options{}); err != nil {
		return nil, fmt.Errorf("commit the session log: %w", err)
	}
	if start == 0 && len(batch) > 1 {
		// Adopted bundles prove their place against this same checkpoint: the log held only
		// them and the last entry when it was started.
		if err := writeAdoptedProofs(l.evDir, batch[:len(batch)-1], leaves, signed); err != nil {
			return nil, err
		}
	}
	return &Inclusion{Index: index, TreeSize: size, LeafHash: hex.EncodeToString(last), Hashes: hexAll(path), Checkpoint: signed}, nil
}

// adoptedAlready returns the bundle's inclusion proof when the log of origin already holds
// it: written by the append that started the log and adopted the bundles it found.
func adoptedAlready(bundleDir string, leaf []byte, origin string) *Inclusion {
	inc, cp, err := readInclusion(bundleDir, leaf)
	if err != nil || cp.Origin != origin {
		return nil
	}
	return inc
}

func writeInclusion(bundleDir string, inc *Inclusion) error {
	raw, _ := json.MarshalIndent(inc, "", "  ")
	return atomicfile.Write(filepath.Join(bundleDir, InclusionFile), append(raw, '\n'), 0o644, atomicfile.Options{})
}

// adoptable lists the bundles of evDir, oldest first, other than the one being appended,
// that verify with the key: those written before the log existed.
func adoptable(evDir, except string, key signature.Verifier) []Entry {
	dirs, err := evidence.List(evDir)
	if err != nil {
		return nil
	}
	sort.Strings(dirs)
	var out []Entry
	for _, d := range dirs {
		if filepath.Base(d) == except || realDir(d) != nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(d, InclusionFile)); err == nil {
			// It was in a log: one that is gone now (deleted) or another one. Taking it
			// in would launder it; left out, `evidence log verify` names it.
			continue
		}
		before, err := bundleDigest(d)
		if err != nil {
			continue
		}
		if _, err := evidence.Verify(d, key); err != nil {
			continue // left out, so `evidence log verify` names it
		}
		// What is logged is what was verified: a file changed meanwhile is left out.
		if digest, err := bundleDigest(d); err == nil && bytes.Equal(digest, before) {
			name := filepath.Base(d)
			out = append(out, Entry{Kind: KindBundle, Bundle: name, SHA256: hex.EncodeToString(digest), Leaf: hex.EncodeToString(leafOf(name, digest)), Adopted: true})
		}
	}
	return out
}

// writeAdoptedProofs writes each adopted bundle's inclusion proof in the tree of all leaves.
func writeAdoptedProofs(evDir string, adopted []Entry, leaves [][]byte, signed string) error {
	t := newTree(leaves)
	for i, e := range adopted {
		path, err := t.inclusion(uint64(i))
		if err != nil {
			return err
		}
		inc := &Inclusion{Index: e.Index, TreeSize: uint64(len(leaves)), LeafHash: e.Leaf, Hashes: hexAll(path), Checkpoint: signed}
		if err := writeInclusion(filepath.Join(evDir, e.Bundle), inc); err != nil {
			return fmt.Errorf("the earlier bundle %s is in the log but its inclusion proof was not written: %w", e.Bundle, err)
		}
	}
	return nil
}

// tree holds every node of the perfect subtrees over leaves, level by level, to build
// inclusion proofs for any leaf.
type tree struct{ levels [][][]byte }

func newTree(leaves [][]byte) *tree {
	t := &tree{levels: [][][]byte{leaves}}
	for lvl := t.levels[0]; len(lvl) > 1; {
		next := make([][]byte, 0, len(lvl)/2)
		for i := 0; i+1 < len(lvl); i += 2 {
			next = append(next, hasher.HashChildren(lvl[i], lvl[i+1]))
		}
		t.levels = append(t.levels, next)
		lvl = next
	}
	return t
}

func (t *tree) inclusion(index uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, uint64(len(t.levels[0])))
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		hashes[i] = t.levels[id.Level][id.Index]
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// loadState reads state.json, or starts a new log when there is none. The stored range must
// hash to the root of the stored checkpoint, signed by key: an edited state is refused
// rather than signed over.
func loadState(logDir string, key signature.Verifier) (*state, *compact.Range, error) {
	path := filepath.Join(logDir, StateFile)
	raw, err := safeopen.ReadFile(path, maxSmallFile)
	if errors.Is(err, fs.ErrNotExist) {
		if n, _ := fileSize(filepath.Join(logDir, EntriesFile)); n > 0 {
			return nil, nil, fmt.Errorf("%s has entries but %s is missing: the log was damaged; run `evidence log verify` and move %s aside to start a new log", EntriesFile, path, logDir)
		}
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, nil, err
		}
		return &state{Version: 1, Origin: OriginPrefix + hex.EncodeToString(id[:])}, factory.NewEmptyRange(0), nil
	}
	if err != nil {
		return nil, nil, err
	}
	st, rng, err := parseState(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Key != "" {
		if id, err := keyID(key); err != nil || id != st.Key {
			return nil, nil, &KeyMismatchError{Log: filepath.Dir(logDir), InForce: fingerprintID(st.Key), Key: fingerprintID(id)}
		}
	}
	cp, err := OpenCheckpoint([]byte(st.Checkpoint), key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: its checkpoint: %w", path, err)
	}
	root, err := rootOf(rng)
	if err != nil {
		return nil, nil, err
	}
	if cp.Origin != st.Origin || cp.Size != st.Size || !bytes.Equal(cp.Root, root) {
		return nil, nil, fmt.Errorf("%s does not match its own signed checkpoint: the log was edited; run `evidence log verify`", path)
	}
	return st, rng, nil
}

// KeyMismatchError says a log's key was rotated and the key at hand is not the one in force.
type KeyMismatchError struct{ Log, InForce, Key string }

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the session log of %s is signed by the key %s since its last rotation, not by this key (%s)", e.Log, e.InForce, e.Key)
}

// rootOf is the root hash of the tree the range covers from its first leaf; the empty tree's
// is RFC 6962's hash of nothing.
func rootOf(rng *compact.Range) ([]byte, error) {
	if rng.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

func parseState(raw []byte) (*state, *compact.Range, error) {
	var st state
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, nil, fmt.Errorf("not a session log state: %w", err)
	}
	if st.Version != 1 {
		return nil, nil, fmt.Errorf("version %d, want 1", st.Version)
	}
	hashes, err := unhexAll(st.Range)
	if err != nil {
		return nil, nil, err
	}
	rng, err := factory.NewRange(0, st.Size, hashes)
	if err != nil {
		return nil, nil, fmt.Errorf("its range does not fit its size: %w", err)
	}
	return &st, rng, nil
}

// writeEntry writes line at offset of the entries file and syncs it. Anything after offset
// was never committed (an append that stopped before its state was replaced) and is
// overwritten.
func writeEntry(path string, offset int64, line []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(offset); err != nil {
		return err
	}
	if _, err := f.WriteAt(line, offset); err != nil {
		return err
	}
	return f.Sync()
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Latest returns the log's latest signed checkpoint, as stored (not verified).
func Latest(evDir string) ([]byte, error) {
	raw, err := safeopen.ReadFile(filepath.Join(evDir, Dir, StateFile), maxSmallFile)
	if err != nil {
		return nil, err
	}
	st, _, err := parseState(raw)
	if err != nil {
		return nil, err
	}
	return []byte(st.Checkpoint), nil
}

// readEntries reads entries.jsonl strictly; a line that is not an entry is an error naming
// its line number.
func readEntries(path string) ([]Entry, error) {
	f, _, err := safeopen.Regular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	r := bufio.NewReaderSize(f, 1<<16)
	for n := 1; ; n++ {
		line, err := readLine(r)
		if errors.Is(err, errLongLine) {
			return out, &LineError{Line: n, Text: fmt.Sprintf("(a line longer than %d bytes)", maxEntryLine)}
		}
		if len(line) == 0 && err == io.EOF {
			return out, nil
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&e); derr != nil || !wellFormed(e) {
			return out, &LineError{Line: n, Text: string(bytes.TrimSpace(line))}
		}
		out = append(out, e)
		if err == io.EOF {
			return out, nil
		}
	}
}

// wellFormed says an entry has the fields of its kind, and only those.
func wellFormed(e Entry) bool {
	if len(e.Leaf) != 2*sha256.Size {
		return false
	}
	switch e.Kind {
	case KindBundle:
		return len(e.SHA256) == 2*sha256.Size && e.Bundle != "" && e.Previous == "" && e.Key == ""
	case KindKey:
		return e.Previous != "" && e.Key != "" && e.Bundle == "" && e.SHA256 == "" && !e.Adopted
	}
	return false
}

var errLongLine = errors.New("line too long")

// readLine reads one line of at most maxEntryLine bytes, with its newline.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxEntryLine {
			return nil, errLongLine
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// LineError is a line of entries.jsonl that is not an entry.
type LineError struct {
	Line int
	Text string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s line %d is not a log entry: %.80q", EntriesFile, e.Line, e.Text)
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

func unhexAll(ss []string) ([][]byte, error) {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		h, err := hex.DecodeString(s)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("hash %d %q is not a hex SHA-256 hash", i, s)
		}
		out[i] = h
	}
	return out, nil
}
