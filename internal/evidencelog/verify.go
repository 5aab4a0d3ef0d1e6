package evidencelog

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/merkle/proof"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/safeopen"
)

// Problems Verify names.
const (
	ProblemCheckpoint  = "checkpoint"  // the latest checkpoint is unreadable or not signed by the key
	ProblemEdited      = "edited"      // the log's own files were changed: a line is not an entry, or the entries do not hash to a signed root
	ProblemDeleted     = "deleted"     // a bundle in the log is gone
	ProblemReplaced    = "replaced"    // a bundle is not the one appended (another session's, an older one, or re-signed)
	ProblemReordered   = "reordered"   // an entry is not where its bundle's own proof puts it
	ProblemInserted    = "inserted"    // a bundle directory the log does not hold
	ProblemDuplicated  = "duplicated"  // one bundle named by two entries
	ProblemUncommitted = "uncommitted" // entries no signed checkpoint covers
	ProblemInclusion   = "inclusion"   // a bundle's stored inclusion proof is missing or does not verify
	ProblemSince       = "since"       // the log is not consistent with the checkpoint the auditor kept
)

// Problem is one thing wrong with the log, naming the bundle and position when it can.
type Problem struct {
	Kind   string  `json:"kind"`
	Bundle string  `json:"bundle,omitempty"`
	Index  *uint64 `json:"index,omitempty"`
	Detail string  `json:"detail"`
}

func (p Problem) String() string {
	where := ""
	if p.Index != nil {
		where = fmt.Sprintf(" [entry %d]", *p.Index)
	}
	if p.Bundle != "" {
		where += " " + p.Bundle
	}
	return fmt.Sprintf("%s%s: %s", strings.ToUpper(p.Kind), where, p.Detail)
}

// Result is what Verify found.
type Result struct {
	Dir        string    `json:"dir"`
	Origin     string    `json:"origin"`
	Size       uint64    `json:"size"`
	Root       string    `json:"root"`
	Checkpoint string    `json:"checkpoint"`
	Bundles    int       `json:"bundles"` // bundle directories in the evidence directory
	Keys       []string  `json:"keys"`    // fingerprints of the keys that signed the log, oldest first
	Since      *Since    `json:"since,omitempty"`
	Problems   []Problem `json:"problems"`

	keys   *Keys
	logged map[string]uint64 // each committed bundle's entry
}

// Since is the auditor's kept checkpoint and whether the log still extends it.
type Since struct {
	Size       uint64 `json:"size"`
	Root       string `json:"root"`
	Consistent bool   `json:"consistent"`
}

// SignerOf is the key that appended the named bundle, when the log holds it and verified
// without problems (the key given to Verify, or one the log's rotations tie to it); nil
// otherwise.
func (r *Result) SignerOf(bundle string) signature.Verifier {
	i, ok := r.logged[bundle]
	if !ok || r.keys == nil || !r.OK() {
		// A log with problems ties no bundle to an earlier key.
		return nil
	}
	return r.keys.At(i)
}

// OK says the log verified with nothing wrong.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// NoLogError says the evidence directory has no session log.
type NoLogError struct{ Dir string }

func (e *NoLogError) Error() string {
	return fmt.Sprintf("%s has no session log (no %s): sessions recorded there before the log existed are verified one by one with `evidence verify`", e.Dir, filepath.Join(Dir, StateFile))
}

// VerifyOptions choose what Verify checks beyond the log itself.
type VerifyOptions struct {
	// Since is a signed checkpoint an auditor kept: the log must still extend it.
	Since []byte
	// Fast skips reading the bundles: the log, its signed checkpoint and which bundles are
	// present are checked, but a bundle replaced in place goes unseen.
	Fast bool
}

// Verify checks the log of the evidence directory evDir with the evidence public key: the
// latest checkpoint's signature, the entries against it, every bundle against its entry and
// its own inclusion proof (unless opts.Fast), the directory for bundles the log does not hold
// and, with opts.Since, that the log still extends the checkpoint an auditor kept.
func Verify(evDir string, v signature.Verifier, opts VerifyOptions) (*Result, error) {
	raw, err := safeopen.ReadFile(filepath.Join(evDir, Dir, StateFile), maxSmallFile)
	if errors.Is(err, fs.ErrNotExist) {
		if proved := bundlesWithProofs(evDir); len(proved) > 0 {
			// Bundles proving their place in a log that is not there: it was deleted.
			return &Result{Dir: evDir, Bundles: len(proved), Problems: []Problem{{Kind: ProblemEdited,
				Detail: fmt.Sprintf("the session log is gone, though %d bundle(s) carry inclusion proofs of it (%s…): it was deleted", len(proved), proved[0])}}}, nil
		}
		return nil, &NoLogError{Dir: evDir}
	} else if err != nil {
		return nil, err
	}
	x := &verification{dir: evDir, v: v, res: &Result{Dir: evDir, Problems: []Problem{}}}
	lineErr, err := x.readEntries()
	if err != nil {
		return nil, err
	}
	x.readCheckpoint(raw)
	x.splitCommitted(lineErr)
	if opts.Since != nil {
		c, err := OpenCheckpoint(opts.Since, x.keys.signing(unverifiedSize(opts.Since)))
		if err != nil {
			return nil, &SinceError{Err: err}
		}
		x.kept = &c
	}
	dirents, err := os.ReadDir(evDir)
	if err != nil {
		return nil, err
	}
	x.readBundles(dirents, opts.Fast)
	x.checkEntries()
	x.findInserted(dirents)
	x.checkSince()
	return x.res, nil
}

// verification is one run of Verify: what it has read so far and the problems it found.
type verification struct {
	dir  string
	v    signature.Verifier
	res  *Result
	cp   *Checkpoint // the latest signed checkpoint, when it verifies
	keys *Keys       // the keys that signed the log (v alone when it was never rotated)
	kept *Checkpoint // the auditor's, with --since

	entries, committed []Entry           // every entry; those the checkpoint covers
	checks             []bundleCheck     // each committed entry's bundle
	roots              map[uint64][]byte // the root of each prefix some checkpoint names
	seen               map[string]uint64 // bundle name → its entry
}

func (x *verification) add(p Problem) { x.res.Problems = append(x.res.Problems, p) }

// readCheckpoint reads the state and opens its latest checkpoint with the key in force at
// its size, following the log's rotations from v.
func (x *verification) readCheckpoint(raw []byte) {
	x.keys = &Keys{epochs: []epoch{{v: x.v}}}
	st, _, err := parseState(raw)
	if err != nil {
		x.add(Problem{Kind: ProblemCheckpoint, Detail: StateFile + ": " + err.Error()})
		return
	}
	size := unverifiedSize([]byte(st.Checkpoint))
	keys, err := buildKeys(x.entries[:min(size, uint64(len(x.entries)))], st.Rotations, st.Origin, x.v)
	if err != nil {
		x.add(Problem{Kind: ProblemCheckpoint, Detail: "the log's keys: " + err.Error()})
		return
	}
	x.keys, x.res.Keys = keys, keys.Fingerprints()
	c, err := OpenCheckpoint([]byte(st.Checkpoint), keys.signing(size))
	if err != nil {
		x.add(Problem{Kind: ProblemCheckpoint, Detail: "the latest checkpoint in " + StateFile + ": " + err.Error()})
		return
	}
	if c.Origin != st.Origin {
		x.add(Problem{Kind: ProblemCheckpoint, Detail: fmt.Sprintf("the latest checkpoint is of the log %s, but %s names %s", c.Origin, StateFile, st.Origin)})
		return
	}
	x.cp = &c
	x.res.Origin, x.res.Size, x.res.Root, x.res.Checkpoint = c.Origin, c.Size, hex.EncodeToString(c.Root), st.Checkpoint
}

// unverifiedSize is the size a signed checkpoint claims, before its signature is checked
// (to choose the key that must have signed it); 0 when it has none.
func unverifiedSize(signed []byte) uint64 {
	body, _, _ := strings.Cut(string(signed), "\n\n")
	c, err := parseBody(body + "\n")
	if err != nil {
		return 0
	}
	return c.Size
}

// readEntries reads entries.jsonl; a line that is not an entry is a problem, returned to
// say the entries after it were not read.
func (x *verification) readEntries() (*LineError, error) {
	entries, err := readEntries(filepath.Join(x.dir, Dir, EntriesFile))
	var lineErr *LineError
	switch {
	case errors.As(err, &lineErr):
		x.add(Problem{Kind: ProblemEdited, Detail: lineErr.Error() + "; the entries after it are not checked"})
	case errors.Is(err, fs.ErrNotExist):
		x.add(Problem{Kind: ProblemEdited, Detail: EntriesFile + " is missing"})
	case err != nil:
		return nil, err
	}
	x.entries = entries
	return lineErr, nil
}

// splitCommitted sets apart the entries the checkpoint covers; those beyond it are
// uncommitted.
func (x *verification) splitCommitted(lineErr *LineError) {
	entries := x.entries
	x.committed = entries
	switch cp := x.cp; {
	case cp == nil:
	case uint64(len(entries)) > cp.Size:
		x.committed = entries[:cp.Size]
		for i, e := range entries[cp.Size:] {
			idx := cp.Size + uint64(i)
			x.add(Problem{Kind: ProblemUncommitted, Bundle: e.Bundle, Index: &idx, Detail: "no signed checkpoint covers this entry (an append that stopped before it was committed, or a line added by hand)"})
		}
	case uint64(len(entries)) < cp.Size && lineErr == nil:
		x.add(Problem{Kind: ProblemEdited, Detail: fmt.Sprintf("%s holds %d entries; the signed checkpoint covers %d: entries were removed", EntriesFile, len(entries), cp.Size)})
	}
}

// readBundles reads each committed entry's bundle (only its presence, when fast: one listing
// of the directory, as a stat per bundle would cost as much as reading it), then the root of
// every prefix a checkpoint names.
func (x *verification) readBundles(dirents []fs.DirEntry, fast bool) {
	if fast {
		present := make(map[string]bool, len(dirents))
		for _, d := range dirents {
			present[d.Name()] = d.IsDir()
		}
		x.checks = make([]bundleCheck, len(x.committed))
		for i, e := range x.committed {
			if e.Kind == KindKey {
				x.checks[i] = bundleCheck{rotation: true}
			} else {
				x.checks[i] = bundleCheck{badName: !plainName(e.Bundle), missing: !present[e.Bundle], unread: true}
			}
		}
	} else {
		x.checks = checkBundles(x.dir, x.committed)
	}
	var sizes []uint64
	for _, c := range append([]*Checkpoint{x.cp, x.kept}, checkpointsOf(x.checks)...) {
		if c != nil {
			sizes = append(sizes, c.Size)
		}
	}
	x.roots = prefixRoots(x.committed, sizes...)
}

// checkEntries checks the committed entries against the checkpoint and each against its
// bundle and the bundle's own proof.
func (x *verification) checkEntries() {
	cp, n := x.cp, uint64(len(x.committed))
	if cp != nil && n == cp.Size && !bytes.Equal(x.roots[cp.Size], cp.Root) {
		x.add(Problem{Kind: ProblemEdited, Detail: EntriesFile + " does not hash to the signed checkpoint's root: entries were edited, reordered, removed or inserted"})
	}
	x.seen, x.res.logged, x.res.keys = map[string]uint64{}, map[string]uint64{}, x.keys
	var rewrittenAt, intact uint64 // the smallest proof's size whose prefix differs; the largest that matches
	var rewrittenBy string
	for i, e := range x.committed {
		idx := uint64(i)
		at := func(kind, detail string) { x.add(Problem{Kind: kind, Bundle: e.Bundle, Index: &idx, Detail: detail}) }
		if e.Index != idx {
			at(ProblemReordered, fmt.Sprintf("the entry on line %d says it is entry %d", i+1, e.Index))
		}
		if e.Kind == KindKey {
			if hex.EncodeToString(leafOfKey(e.Previous, e.Key)) != e.Leaf {
				at(ProblemEdited, "the rotation's keys were changed: they no longer make its leaf")
			}
			continue
		}
		if first, dup := x.seen[e.Bundle]; dup {
			at(ProblemDuplicated, fmt.Sprintf("the bundle is also entry %d", first))
			continue
		}
		x.seen[e.Bundle] = idx
		x.res.logged[e.Bundle] = idx
		c := x.checks[i]
		if want, err := hex.DecodeString(e.SHA256); err != nil || hex.EncodeToString(leafOf(e.Bundle, want)) != e.Leaf {
			at(ProblemEdited, "the entry's bundle name or digest was changed: they no longer make its leaf")
		}
		switch {
		case c.badName:
			at(ProblemEdited, "the entry's bundle is not a directory name")
			continue
		case c.missing:
			at(ProblemDeleted, "the bundle the log holds here is gone from "+x.dir)
			continue
		case c.err != nil:
			at(ProblemDeleted, "the bundle cannot be read: "+c.err.Error())
			continue
		}
		x.res.Bundles++
		if c.unread {
			continue
		}
		if hex.EncodeToString(c.leaf) != e.Leaf {
			at(ProblemReplaced, "its "+evidence.BundleFile+" is not the one appended (another session's, an older one or a re-signed one)")
		}
		switch {
		case c.incErr != nil:
			at(ProblemInclusion, c.incErr.Error())
		case c.cp.Size > n:
			at(ProblemEdited, fmt.Sprintf("its inclusion proof is of a checkpoint of %d entries, more than the log holds: the log was cut back", c.cp.Size))
		case cp != nil && c.cp.Origin != cp.Origin:
			at(ProblemInclusion, fmt.Sprintf("its inclusion proof is for another log (origin %s)", c.cp.Origin))
		case c.inc.Index != idx:
			at(ProblemReordered, fmt.Sprintf("its own inclusion proof puts it at entry %d", c.inc.Index))
		case !bytes.Equal(x.roots[c.cp.Size], c.cp.Root):
			// Only now is the proof's own signature checked (the cost of one signature per
			// bundle would dominate): it says whom to blame.
			if _, err := OpenCheckpoint([]byte(c.inc.Checkpoint), x.keys.signing(c.cp.Size)); err != nil {
				at(ProblemInclusion, InclusionFile+": its checkpoint: "+err.Error())
			} else if rewrittenBy == "" || c.cp.Size < rewrittenAt {
				rewrittenAt, rewrittenBy = c.cp.Size, e.Bundle
			}
		case c.cp.Size > intact:
			intact = c.cp.Size
		}
	}
	if rewrittenBy != "" {
		// Every later prefix differs too: the earliest signed prefix that no longer matches,
		// and the longest that still does below it, bound where the history was changed.
		still := "none of the signed checkpoints before it still matches"
		if intact > 0 && intact < rewrittenAt {
			still = fmt.Sprintf("the first %d still match their signed checkpoint", intact)
		}
		x.add(Problem{Kind: ProblemEdited, Detail: fmt.Sprintf("the log's first %d entries no longer hash to the signed checkpoint bundle %s's proof carries (%s): the log's history was rewritten", rewrittenAt, rewrittenBy, still)})
	}
	for _, e := range x.entries[len(x.committed):] {
		x.seen[e.Bundle] = 0 // named as uncommitted already
	}
}

// findInserted names the bundle directories the log does not hold.
func (x *verification) findInserted(dirents []fs.DirEntry) {
	for _, d := range dirents {
		name := d.Name()
		if _, ok := x.seen[name]; ok || !d.IsDir() || strings.HasPrefix(name, ".") || name == Dir {
			continue
		}
		b := filepath.Join(x.dir, name)
		if !evidence.IsBundle(b) {
			continue
		}
		x.res.Bundles++
		detail := "the bundle is not in the log (added to the directory, or written when the log could not take it)"
		if _, err := os.Stat(filepath.Join(b, InclusionFile)); err == nil {
			detail = "the bundle is not in this log, though it carries an inclusion proof (moved here from another log, or its entry was removed)"
		}
		x.add(Problem{Kind: ProblemInserted, Bundle: name, Detail: detail})
	}
}

// checkSince proves the log still extends the checkpoint the auditor kept.
func (x *verification) checkSince() {
	kept := x.kept
	if kept == nil {
		return
	}
	x.res.Since = &Since{Size: kept.Size, Root: hex.EncodeToString(kept.Root)}
	switch {
	case x.cp != nil && kept.Origin != x.cp.Origin:
		x.add(Problem{Kind: ProblemSince, Detail: fmt.Sprintf("the kept checkpoint is of another log (origin %s; this log is %s)", kept.Origin, x.cp.Origin)})
	case kept.Size > uint64(len(x.committed)):
		x.add(Problem{Kind: ProblemSince, Detail: fmt.Sprintf("the log holds %d entries, fewer than the %d of the kept checkpoint: it was truncated or rolled back", len(x.committed), kept.Size)})
	case !bytes.Equal(x.roots[kept.Size], kept.Root):
		x.add(Problem{Kind: ProblemSince, Detail: fmt.Sprintf("the log's first %d entries no longer hash to the kept checkpoint's root: the log was rewritten since", kept.Size)})
	default:
		x.res.Since.Consistent = true
	}
}

// SinceError says the kept checkpoint given to Verify cannot be used.
type SinceError struct{ Err error }

func (e *SinceError) Error() string { return "the kept checkpoint: " + e.Err.Error() }
func (e *SinceError) Unwrap() error { return e.Err }

// bundleCheck is what one entry's bundle directory holds.
type bundleCheck struct {
	rotation bool // the entry is a key rotation, not a bundle
	unread   bool // not read (VerifyOptions.Fast): only its presence is known
	badName  bool
	missing  bool
	err      error
	leaf     []byte
	inc      *Inclusion
	cp       *Checkpoint // the checkpoint the bundle's proof was signed against (signature checked by CheckInclusion)
	incErr   error
}

// checkBundles reads every entry's bundle — its leaf hash and its inclusion proof — on as
// many goroutines as there are processors.
func checkBundles(evDir string, entries []Entry) []bundleCheck {
	out := make([]bundleCheck, len(entries))
	var wg sync.WaitGroup
	next := make(chan int, 256)
	for w := 0; w < runtime.NumCPU()*2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = checkBundle(evDir, entries[i])
			}
		}()
	}
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// plainName says name is a directory name in the evidence directory, not a path.
func plainName(name string) bool {
	return name == filepath.Base(name) && name != "." && name != ".." && !strings.ContainsAny(name, `/\`)
}

func checkBundle(evDir string, e Entry) bundleCheck {
	if e.Kind == KindKey {
		return bundleCheck{rotation: true}
	}
	if !plainName(e.Bundle) {
		return bundleCheck{badName: true}
	}
	dir := filepath.Join(evDir, e.Bundle)
	leaf, err := LeafHash(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return bundleCheck{missing: true}
	} else if err != nil {
		return bundleCheck{err: err}
	}
	c := bundleCheck{leaf: leaf}
	c.inc, c.cp, c.incErr = readInclusion(dir, leaf)
	return c
}

// checkpointsOf are the checkpoints the bundles' proofs carry.
func checkpointsOf(checks []bundleCheck) []*Checkpoint {
	out := make([]*Checkpoint, len(checks))
	for i, c := range checks {
		out[i] = c.cp
	}
	return out
}

// readInclusion reads a bundle's log-inclusion.json and checks that its audit path leads
// from the bundle's leaf to the root of the checkpoint stored with it. The checkpoint's
// signature is checked by the caller (CheckInclusion) or against the log.
func readInclusion(bundleDir string, leaf []byte) (*Inclusion, *Checkpoint, error) {
	raw, err := safeopen.ReadFile(filepath.Join(bundleDir, InclusionFile), maxSmallFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errors.New("the bundle has no " + InclusionFile)
	} else if err != nil {
		return nil, nil, err
	}
	var inc Inclusion
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inc); err != nil {
		return nil, nil, fmt.Errorf("%s is not an inclusion proof: %v", InclusionFile, err)
	}
	cpText := inc.Checkpoint
	body, _, _ := strings.Cut(cpText, "\n\n")
	cp, err := parseBody(body + "\n")
	if err != nil {
		return &inc, nil, fmt.Errorf("%s: its checkpoint: %v", InclusionFile, err)
	}
	if cp.Size != inc.TreeSize {
		return &inc, nil, fmt.Errorf("%s: its checkpoint is of size %d, the proof of size %d", InclusionFile, cp.Size, inc.TreeSize)
	}
	if inc.LeafHash != hex.EncodeToString(leaf) {
		return &inc, nil, fmt.Errorf("%s proves another bundle's leaf", InclusionFile)
	}
	path, err := unhexAll(inc.Hashes)
	if err != nil {
		return &inc, nil, fmt.Errorf("%s: %v", InclusionFile, err)
	}
	if err := proof.VerifyInclusion(hasher, inc.Index, inc.TreeSize, leaf, path, cp.Root); err != nil {
		return &inc, nil, fmt.Errorf("%s does not prove the bundle is in the log: its audit path does not lead to its checkpoint's root", InclusionFile)
	}
	return &inc, &cp, nil
}

// checkInclusion checks a bundle's own inclusion proof: the checkpoint stored with it is
// signed by the key keyFor gives for its size, and the audit path leads from the bundle to
// its root. It returns the proof and its checkpoint; a bundle without one gives an error
// naming the file.
func checkInclusion(bundleDir string, keyFor func(size uint64) signature.Verifier) (*Inclusion, *Checkpoint, error) {
	leaf, err := LeafHash(bundleDir)
	if err != nil {
		return nil, nil, err
	}
	inc, _, err := readInclusion(bundleDir, leaf)
	if err != nil {
		return nil, nil, err
	}
	cp, err := OpenCheckpoint([]byte(inc.Checkpoint), keyFor(inc.TreeSize))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: its checkpoint: %v", InclusionFile, err)
	}
	return inc, &cp, nil
}

// prefixRoots computes, in one pass over the entries' leaves, the root of every prefix of
// one of the sizes (a size beyond the entries gets no root).
func prefixRoots(entries []Entry, sizes ...uint64) map[uint64][]byte {
	need := map[uint64]bool{}
	for _, n := range sizes {
		need[n] = true
	}
	out := map[uint64][]byte{}
	rng := factory.NewEmptyRange(0)
	record := func() {
		if need[rng.End()] {
			if root, err := rootOf(rng); err == nil {
				out[rng.End()] = root
			}
		}
	}
	record()
	for _, e := range entries {
		leaf, err := hex.DecodeString(e.Leaf)
		if err != nil {
			break
		}
		if err := rng.Append(leaf, nil); err != nil {
			break
		}
		record()
	}
	return out
}

// BundleInLog is where a bundle stands in its evidence directory's session log.
type BundleInLog struct {
	Index      uint64 `json:"index"`
	TreeSize   uint64 `json:"treeSize"`   // the size of the checkpoint stored with the bundle
	LatestSize uint64 `json:"latestSize"` // the size of the log's latest checkpoint
	// Signer is the key that appended the bundle: the key given, or — when the log was
	// rotated — the one in force then, which the rotations tie to the key given.
	Signer signature.Verifier `json:"-"`
}

// NotLoggedError says a bundle is in no session log: written before the log existed, or
// outside an evidence directory.
type NotLoggedError struct{ Bundle string }

func (e *NotLoggedError) Error() string {
	return "the bundle is in no session log (no " + InclusionFile + ", and its directory's log does not name it)"
}

// VerifyBundle checks a bundle's place in the session log: its own inclusion proof against
// the signed checkpoint stored with it and, when its directory holds the log, that the
// log's entry at that index is this bundle and that the log's latest signed checkpoint still
// extends the one in the proof. Checkpoints are checked with the key in force at their
// size, following the log's rotations from v. A bundle the log names but whose proof is
// gone fails; a bundle in no log gives a NotLoggedError.
func VerifyBundle(bundleDir string, v signature.Verifier) (*BundleInLog, error) {
	bundleDir, err := filepath.Abs(bundleDir) // "." inside a bundle names it too
	if err != nil {
		return nil, err
	}
	evDir, name := filepath.Dir(bundleDir), filepath.Base(bundleDir)
	_, statErr := os.Stat(filepath.Join(bundleDir, InclusionFile))
	raw, err := safeopen.ReadFile(filepath.Join(evDir, Dir, StateFile), maxSmallFile)
	hasLog := err == nil
	if errors.Is(statErr, fs.ErrNotExist) {
		if hasLog {
			if entries, _ := readEntries(filepath.Join(evDir, Dir, EntriesFile)); containsBundle(entries, name) {
				return nil, errors.New("the session log names this bundle but its " + InclusionFile + " is gone")
			}
		}
		return nil, &NotLoggedError{Bundle: bundleDir}
	}
	if !hasLog {
		// Moved out of its evidence directory: its own proof is what remains.
		inc, _, err := checkInclusion(bundleDir, func(uint64) signature.Verifier { return v })
		if err != nil {
			return nil, err
		}
		return &BundleInLog{Index: inc.Index, TreeSize: inc.TreeSize, Signer: v}, nil
	}
	st, _, err := parseState(raw)
	if err != nil {
		return nil, fmt.Errorf("the session log's %s: %v", StateFile, err)
	}
	entries, err := readEntries(filepath.Join(evDir, Dir, EntriesFile))
	if err != nil {
		return nil, fmt.Errorf("the session log: %v", err)
	}
	size := unverifiedSize([]byte(st.Checkpoint))
	if uint64(len(entries)) < size {
		return nil, fmt.Errorf("the session log holds %d entries, its checkpoint %d: run `evidence log verify`", len(entries), size)
	}
	entries = entries[:size]
	keys, err := buildKeys(entries, st.Rotations, st.Origin, v)
	if err != nil {
		return nil, fmt.Errorf("the session log's keys: %v", err)
	}
	latest, err := OpenCheckpoint([]byte(st.Checkpoint), keys.signing(size))
	if err != nil {
		return nil, fmt.Errorf("the session log's latest checkpoint: %v", err)
	}
	inc, own, err := checkInclusion(bundleDir, keys.signing)
	if err != nil {
		return nil, err
	}
	if latest.Origin != st.Origin {
		return nil, fmt.Errorf("the session log's latest checkpoint is of another log (%s): run `evidence log verify`", latest.Origin)
	}
	if inc.Index >= uint64(len(entries)) || entries[inc.Index].Index != inc.Index || entries[inc.Index].Bundle != name || entries[inc.Index].Leaf != inc.LeafHash {
		return nil, fmt.Errorf("the session log's entry %d is not this bundle: run `evidence log verify`", inc.Index)
	}
	roots := prefixRoots(entries, inc.TreeSize, latest.Size)
	if !bytes.Equal(roots[latest.Size], latest.Root) {
		return nil, errors.New("the session log's entries do not match its latest signed checkpoint: run `evidence log verify`")
	}
	if own.Origin != latest.Origin || !bytes.Equal(roots[inc.TreeSize], own.Root) {
		return nil, errors.New("the session log no longer extends the checkpoint in the bundle's proof: its history was rewritten; run `evidence log verify`")
	}
	return &BundleInLog{Index: inc.Index, TreeSize: inc.TreeSize, LatestSize: latest.Size, Signer: keys.At(inc.Index)}, nil
}

func containsBundle(entries []Entry, name string) bool {
	for _, e := range entries {
		if e.Bundle == name {
			return true
		}
	}
	return false
}

// bundlesWithProofs names the bundles of evDir that carry an inclusion proof.
func bundlesWithProofs(evDir string) []string {
	dirs, _ := evidence.List(evDir)
	var out []string
	for _, d := range dirs {
		if _, err := os.Lstat(filepath.Join(d, InclusionFile)); err == nil {
			out = append(out, filepath.Base(d))
		}
	}
	return out
}
