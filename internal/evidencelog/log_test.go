package evidencelog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sourceos/sourceosctl/internal/evidence"
)

// testLog is an evidence directory with its key.
type testLog struct {
	dir string
	key *evidence.Key
	pub signature.Verifier
}

func newTestLog(t testing.TB) *testLog {
	t.Helper()
	base := t.TempDir()
	key, err := evidence.LoadOrCreateKey(filepath.Join(base, "evidence.key"), filepath.Join(base, "evidence.pub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := evidence.LoadPublicKey(filepath.Join(base, "evidence.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{dir: filepath.Join(base, "evidence"), key: key, pub: pub}
}

func sessionName(i int) string { return fmt.Sprintf("20261202t120000z-%012d", i) }

// write writes a real signed bundle for session i, without logging it.
func (l *testLog) write(t testing.TB, i int) string {
	t.Helper()
	dir, err := evidence.Write(l.dir, sessionName(i), evidence.SamplePredicate(sessionName(i)),
		[]evidence.Artifact{{Name: "session.log", Data: []byte(fmt.Sprintf("session %d\n", i))}}, l.key)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// session writes bundle i and appends it, as a session's record phase does.
func (l *testLog) session(t testing.TB, i int) *Appended {
	t.Helper()
	inc, err := Append(l.write(t, i), l.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return inc
}

func (l *testLog) verify(t *testing.T, since []byte) *Result {
	t.Helper()
	res, err := Verify(l.dir, l.pub, VerifyOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (l *testLog) path(parts ...string) string {
	return filepath.Join(append([]string{l.dir}, parts...)...)
}

func TestAppendThenVerify(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 7; i++ {
		inc := l.session(t, i)
		if inc.Index != uint64(i) || inc.TreeSize != uint64(i+1) {
			t.Fatalf("append %d: index %d size %d", i, inc.Index, inc.TreeSize)
		}
	}
	res := l.verify(t, nil)
	if !res.OK() || res.Size != 7 || res.Bundles != 7 {
		t.Fatalf("an intact log must verify: %+v", res)
	}
	for i := 0; i < 7; i++ {
		dir := l.path(sessionName(i))
		inc, err := VerifyBundle(dir, l.pub)
		if err != nil || inc.Index != uint64(i) {
			t.Fatalf("bundle %d's own proof: %v %+v", i, err, inc)
		}
		// The proof beside the signed files does not disturb the bundle's own verification.
		if _, err := evidence.Verify(dir, l.pub); err != nil {
			t.Fatalf("bundle %d with its inclusion proof: %v", i, err)
		}
	}
	signed, err := Latest(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := OpenCheckpoint(signed, l.pub)
	if err != nil || cp.Size != 7 || !strings.HasPrefix(cp.Origin, OriginPrefix) {
		t.Fatalf("latest checkpoint: %v %+v", err, cp)
	}
	// The C2SP form: origin, size, base64 root; a blank line; one signature line by the origin.
	lines := strings.Split(string(signed), "\n")
	if len(lines) != 6 || lines[1] != "7" || lines[3] != "" || !strings.HasPrefix(lines[4], "— "+cp.Origin+" ") {
		t.Fatalf("checkpoint is not a C2SP signed note:\n%s", signed)
	}
}

func TestCheckpointOfAnotherKeyIsRefused(t *testing.T) {
	l, other := newTestLog(t), newTestLog(t)
	l.session(t, 0)
	signed, _ := Latest(l.dir)
	if _, err := OpenCheckpoint(signed, other.pub); err == nil || !strings.Contains(err.Error(), "not signed by this key") {
		t.Fatalf("another key's checkpoint: %v", err)
	}
	if _, err := Verify(l.dir, other.pub, VerifyOptions{}); err != nil {
		t.Fatal(err)
	} else if res := l.verifyWith(t, other.pub); res.OK() || res.Problems[0].Kind != ProblemCheckpoint {
		t.Fatalf("a log verified with another key must fail on its checkpoint: %+v", res.Problems)
	}
	// An auditor's kept checkpoint signed by someone else is bad input, not a log problem.
	otherSigned := func() []byte { other.session(t, 0); b, _ := Latest(other.dir); return b }()
	if _, err := Verify(l.dir, l.pub, VerifyOptions{Since: otherSigned}); err == nil {
		t.Fatal("a kept checkpoint by another key must be refused")
	}
}

func (l *testLog) verifyWith(t *testing.T, v signature.Verifier) *Result {
	t.Helper()
	res, err := Verify(l.dir, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestTamperingIsDetectedAndNamed builds an intact log of six sessions, tampers with it one
// way, and expects the problem named on the bundle it concerns.
func TestTamperingIsDetectedAndNamed(t *testing.T) {
	type want struct{ kind, bundle string }
	cases := []struct {
		name   string
		tamper func(t *testing.T, l *testLog)
		want   []want
	}{
		{"bundle deleted", func(t *testing.T, l *testLog) {
			must(t, os.RemoveAll(l.path(sessionName(2))))
		}, []want{{ProblemDeleted, sessionName(2)}}},
		{"bundle replaced by an older one", func(t *testing.T, l *testLog) {
			for _, f := range []string{evidence.BundleFile, evidence.EnvelopeFile} {
				copyFile(t, l.path(sessionName(1), f), l.path(sessionName(4), f))
			}
		}, []want{{ProblemReplaced, sessionName(4)}}},
		{"bundle re-signed (same statement, new signature)", func(t *testing.T, l *testLog) {
			other := &testLog{dir: t.TempDir(), key: l.key}
			other.write(t, 3)
			for _, f := range []string{evidence.BundleFile, evidence.EnvelopeFile} {
				copyFile(t, filepath.Join(other.dir, sessionName(3), f), l.path(sessionName(3), f))
			}
		}, []want{{ProblemReplaced, sessionName(3)}}},
		{"bundle written beside the log", func(t *testing.T, l *testLog) {
			l.write(t, 99)
		}, []want{{ProblemInserted, sessionName(99)}}},
		{"bundle moved in from another log", func(t *testing.T, l *testLog) {
			other := newTestLog(t)
			other.key = l.key
			other.session(t, 77)
			must(t, os.Rename(filepath.Join(other.dir, sessionName(77)), l.path(sessionName(77))))
		}, []want{{ProblemInserted, sessionName(77)}}},
		{"two entries swapped", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[1], es[2] = es[2], es[1]; return es })
		}, []want{{ProblemReordered, sessionName(2)}, {ProblemReordered, sessionName(1)}, {ProblemEdited, ""}}},
		{"two entries swapped, indexes renumbered", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry {
				es[1], es[2] = es[2], es[1]
				es[1].Index, es[2].Index = 1, 2
				return es
			})
		}, []want{{ProblemReordered, sessionName(2)}, {ProblemReordered, sessionName(1)}, {ProblemEdited, ""}}},
		{"entry removed with its bundle", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { return append(es[:3], es[4:]...) })
			must(t, os.RemoveAll(l.path(sessionName(3))))
		}, []want{{ProblemEdited, ""}}},
		{"last entry removed", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { return es[:5] })
		}, []want{{ProblemEdited, ""}, {ProblemInserted, sessionName(5)}}},
		{"entry's leaf edited", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[0].Leaf = strings.Repeat("0", 64); return es })
		}, []want{{ProblemReplaced, sessionName(0)}, {ProblemEdited, ""}}},
		{"entry added by hand", func(t *testing.T, l *testLog) {
			l.write(t, 50)
			digest, _ := bundleDigest(l.path(sessionName(50)))
			leaf := leafOf(sessionName(50), digest)
			editEntries(t, l, func(es []Entry) []Entry {
				return append(es, Entry{Index: 6, Kind: KindBundle, Bundle: sessionName(50), SHA256: fmt.Sprintf("%x", digest), Leaf: fmt.Sprintf("%x", leaf)})
			})
		}, []want{{ProblemUncommitted, sessionName(50)}}},
		{"two entries' bundle names swapped", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[1].Bundle, es[2].Bundle = es[2].Bundle, es[1].Bundle; return es })
		}, []want{{ProblemEdited, sessionName(1)}, {ProblemEdited, sessionName(2)}}},
		{"entry names a path outside the directory", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[2].Bundle = "../" + es[2].Bundle; return es })
		}, []want{{ProblemEdited, "../" + sessionName(2)}, {ProblemInserted, sessionName(2)}}},
		{"entry names the directory itself", func(t *testing.T, l *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[2].Bundle = "."; return es })
		}, []want{{ProblemEdited, "."}}},
		{"line that is not an entry", func(t *testing.T, l *testLog) {
			appendText(t, l.path(Dir, EntriesFile), "{\"index\":6,\"oops\":true}\n")
		}, []want{{ProblemEdited, ""}}},
		{"checkpoint edited", func(t *testing.T, l *testLog) {
			editState(t, l, func(st *state) { st.Checkpoint = strings.Replace(st.Checkpoint, "\n6\n", "\n5\n", 1) })
		}, []want{{ProblemCheckpoint, ""}}},
		{"state rolled back to an older signed one", func(t *testing.T, l *testLog) {
			old, err := os.ReadFile(l.path(Dir, "state-at-4.json"))
			must(t, err)
			must(t, os.WriteFile(l.path(Dir, StateFile), old, 0o600))
		}, []want{{ProblemUncommitted, sessionName(4)}, {ProblemUncommitted, sessionName(5)}}},
		{"inclusion proof taken from another log by the same key", func(t *testing.T, l *testLog) {
			// The same three bundles in another log: the same leaves and tree, another origin.
			other := &testLog{dir: t.TempDir(), key: l.key, pub: l.pub}
			for i := 0; i < 3; i++ {
				must(t, os.MkdirAll(filepath.Join(other.dir, sessionName(i)), 0o755))
				copyFile(t, l.path(sessionName(i), evidence.BundleFile), filepath.Join(other.dir, sessionName(i), evidence.BundleFile))
				if _, err := Append(filepath.Join(other.dir, sessionName(i)), l.key.Signer); err != nil {
					t.Fatal(err)
				}
			}
			copyFile(t, filepath.Join(other.dir, sessionName(2), InclusionFile), l.path(sessionName(2), InclusionFile))
		}, []want{{ProblemInclusion, sessionName(2)}}},
		{"inclusion proof removed", func(t *testing.T, l *testLog) {
			must(t, os.Remove(l.path(sessionName(2), InclusionFile)))
		}, []want{{ProblemInclusion, sessionName(2)}}},
		{"inclusion proof edited", func(t *testing.T, l *testLog) {
			var inc Inclusion
			readJSON(t, l.path(sessionName(2), InclusionFile), &inc)
			inc.Hashes[0] = strings.Repeat("1", 64)
			writeJSON(t, l.path(sessionName(2), InclusionFile), inc)
		}, []want{{ProblemInclusion, sessionName(2)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLog(t)
			for i := 0; i < 6; i++ {
				l.session(t, i)
				if i == 3 {
					copyFile(t, l.path(Dir, StateFile), l.path(Dir, "state-at-4.json"))
				}
			}
			if res := l.verify(t, nil); !res.OK() {
				t.Fatalf("before tampering: %v", res.Problems)
			}
			tc.tamper(t, l)
			res := l.verify(t, nil)
			if res.OK() {
				t.Fatal("the tampering was not detected")
			}
			t.Log("\n" + problems(res))
			for _, w := range tc.want {
				if !hasProblem(res, w.kind, w.bundle) {
					t.Errorf("want %s on %q; got:\n%s", w.kind, w.bundle, problems(res))
				}
			}
		})
	}
}

// TestRewrittenLogNeedsAKeptCheckpoint shows why an auditor keeps checkpoints: whoever can
// read the key can rebuild a whole log without a bundle, and only a checkpoint kept from
// before shows it.
func TestRewrittenLogNeedsAKeptCheckpoint(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 6; i++ {
		l.session(t, i)
	}
	kept, _ := Latest(l.dir)
	if res := l.verify(t, kept); !res.OK() || !res.Since.Consistent {
		t.Fatalf("the log must be consistent with its own latest checkpoint: %+v", res)
	}
	var st state
	readJSON(t, l.path(Dir, StateFile), &st)
	// The rewrite: the log is rebuilt from nothing under the same origin, without bundle 2
	// or with another bundle 2 (re-signed) in its place.
	rebuild := func(sessions []int) {
		must(t, os.RemoveAll(l.path(Dir)))
		must(t, os.MkdirAll(l.path(Dir), 0o700))
		empty, err := signCheckpoint(Checkpoint{Origin: st.Origin, Size: 0, Root: hasher.EmptyRoot()}, l.key.Signer)
		must(t, err)
		writeJSON(t, l.path(Dir, StateFile), state{Version: 1, Origin: st.Origin, Range: []string{}, Checkpoint: empty})
		for i := 0; i < 6; i++ {
			os.Remove(l.path(sessionName(i), InclusionFile))
		}
		// The first append to an empty log adopts the directory's other bundles.
		if a, err := Append(l.path(sessionName(5)), l.key.Signer); err != nil || a.Adopted != len(sessions)-1 {
			t.Fatalf("rebuild: %v %+v", err, a)
		}
		if res := l.verify(t, nil); !res.OK() {
			t.Fatalf("a rewrite with the key is self-consistent (expected): %v", res.Problems)
		}
	}
	must(t, os.RemoveAll(l.path(sessionName(2))))
	rebuild([]int{0, 1, 3, 4, 5})
	res := l.verify(t, kept)
	if res.OK() || res.Since.Consistent || !hasProblem(res, ProblemSince, "") || !strings.Contains(problems(res), "fewer than the 6") {
		t.Fatalf("the kept checkpoint must expose the removal: %+v", res)
	}
	l.write(t, 2)
	rebuild([]int{0, 1, 2, 3, 4, 5})
	res = l.verify(t, kept)
	if res.OK() || !strings.Contains(problems(res), "first 6 entries no longer hash to the kept checkpoint") {
		t.Fatalf("the kept checkpoint must expose the replacement: %s", problems(res))
	}
	other := newTestLog(t)
	other.key, other.pub = l.key, l.pub
	other.session(t, 0)
	if res := other.verify(t, kept); !strings.Contains(problems(res), "another log") {
		t.Fatalf("a checkpoint of another log by the same key: %s", problems(res))
	}
	// A log that grew honestly stays consistent with a checkpoint kept earlier.
	l2 := newTestLog(t)
	l2.session(t, 0)
	kept2, _ := Latest(l2.dir)
	for i := 1; i < 9; i++ {
		l2.session(t, i)
	}
	if res := l2.verify(t, kept2); !res.OK() || !res.Since.Consistent {
		t.Fatalf("a grown log must be consistent with an earlier checkpoint: %+v", res)
	}
}

func TestAppendRefusesAnEditedState(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 3; i++ {
		l.session(t, i)
	}
	editState(t, l, func(st *state) { st.Range[0] = strings.Repeat("2", 64) })
	if _, err := Append(l.write(t, 3), l.key.Signer); err == nil || !strings.Contains(err.Error(), "does not match its own signed checkpoint") {
		t.Fatalf("an append over an edited state must be refused: %v", err)
	}
	must(t, os.Remove(l.path(Dir, StateFile)))
	if _, err := Append(l.path(sessionName(3)), l.key.Signer); err == nil || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("entries without a state must not start a new log over them: %v", err)
	}
}

// TestInterruptedAppendIsOverwritten: bytes an append wrote to entries.jsonl before it
// stopped (its state never committed) are not signed over by the next append.
func TestInterruptedAppendIsOverwritten(t *testing.T) {
	l := newTestLog(t)
	l.session(t, 0)
	l.write(t, 1) // the session whose append stopped half-way
	appendText(t, l.path(Dir, EntriesFile), `{"index":1,"kind":"bun`)
	if res := l.verify(t, nil); !hasProblem(res, ProblemEdited, "") || !hasProblem(res, ProblemInserted, sessionName(1)) {
		t.Fatalf("a half-written entry must be named: %s", problems(res))
	}
	l.session(t, 2)
	res := l.verify(t, nil)
	if len(res.Problems) != 1 || !hasProblem(res, ProblemInserted, sessionName(1)) || res.Size != 2 {
		t.Fatalf("after the next append only the unlogged bundle is named: %s", problems(res))
	}
}

func TestConcurrentAppends(t *testing.T) {
	l := newTestLog(t)
	const writers, each = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if _, err := Append(l.write(t, w*100+j), l.key.Signer); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res := l.verify(t, nil)
	if !res.OK() || res.Size != writers*each || res.Bundles != writers*each {
		t.Fatalf("concurrent appends: %+v", res)
	}
}

func TestThousandSessionsVerify(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("1,000 signed bundles: not in -short (CI=true runs it whatever the flags)")
	}
	l := newTestLog(t)
	for i := 0; i < 1000; i++ {
		l.session(t, i)
	}
	res := l.verify(t, nil)
	if !res.OK() || res.Size != 1000 || res.Bundles != 1000 {
		t.Fatalf("an intact log of 1,000 sessions: size %d bundles %d %s", res.Size, res.Bundles, problems(res))
	}
	must(t, os.RemoveAll(l.path(sessionName(500))))
	if res := l.verify(t, nil); !hasProblem(res, ProblemDeleted, sessionName(500)) || len(res.Problems) != 1 {
		t.Fatalf("one deletion in 1,000: %s", problems(res))
	}
}

func hasProblem(res *Result, kind, bundle string) bool {
	for _, p := range res.Problems {
		if p.Kind == kind && (bundle == "" || p.Bundle == bundle) {
			return true
		}
	}
	return false
}

func problems(res *Result) string {
	var b strings.Builder
	for _, p := range res.Problems {
		fmt.Fprintln(&b, "  ", p.String())
	}
	return b.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, data, 0o644))
}

func appendText(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(text)
	must(t, err)
	must(t, f.Close())
}

func editEntries(t *testing.T, l *testLog, edit func([]Entry) []Entry) {
	t.Helper()
	es, err := readEntries(l.path(Dir, EntriesFile))
	must(t, err)
	var b bytes.Buffer
	for _, e := range edit(es) {
		line, _ := json.Marshal(e)
		b.Write(append(line, '\n'))
	}
	must(t, os.WriteFile(l.path(Dir, EntriesFile), b.Bytes(), 0o600))
}

func editState(t *testing.T, l *testLog, edit func(*state)) {
	t.Helper()
	var st state
	readJSON(t, l.path(Dir, StateFile), &st)
	edit(&st)
	writeJSON(t, l.path(Dir, StateFile), st)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	must(t, json.Unmarshal(raw, v))
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	must(t, err)
	must(t, os.WriteFile(path, raw, 0o600))
}

func TestVerifyBundle(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 5; i++ {
		l.session(t, i)
	}
	got, err := VerifyBundle(l.path(sessionName(1)), l.pub)
	if err != nil || got.Index != 1 || got.TreeSize != 2 || got.LatestSize != 5 {
		t.Fatalf("an intact bundle's place: %v %+v", err, got)
	}
	// Moved out of its directory, its own signed proof still verifies.
	moved := filepath.Join(t.TempDir(), sessionName(1))
	must(t, os.Rename(l.path(sessionName(1)), moved))
	if got, err := VerifyBundle(moved, l.pub); err != nil || got.LatestSize != 0 || got.Index != 1 {
		t.Fatalf("a bundle moved out: %v %+v", err, got)
	}
	must(t, os.Rename(moved, l.path(sessionName(1))))
	// Not logged at all.
	var notLogged *NotLoggedError
	if _, err := VerifyBundle(l.write(t, 40), l.pub); !errorsAs(err, &notLogged) {
		t.Fatalf("a bundle in no log: %v", err)
	}
	// A bundle the log names whose proof was removed.
	must(t, os.Remove(l.path(sessionName(3), InclusionFile)))
	if _, err := VerifyBundle(l.path(sessionName(3)), l.pub); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("a logged bundle without its proof: %v", err)
	}
	// The log's entry edited: the bundle's own proof verifies, the log no longer holds it.
	editEntries(t, l, func(es []Entry) []Entry { es[2].Bundle = sessionName(0); return es })
	if _, err := VerifyBundle(l.path(sessionName(2)), l.pub); err == nil || !strings.Contains(err.Error(), "entry 2 is not this bundle") {
		t.Fatalf("an edited entry: %v", err)
	}
	// Another key.
	other := newTestLog(t)
	if _, err := VerifyBundle(l.path(sessionName(0)), other.pub); err == nil || !strings.Contains(err.Error(), "not signed by this key") {
		t.Fatalf("another key: %v", err)
	}
}

func errorsAs[T error](err error, target *T) bool { return err != nil && errors.As(err, target) }

// TestAdoptsEarlierBundles: the first append to a directory of bundles written before the
// log existed takes in those that verify, oldest first; one that does not is left out and
// named.
func TestAdoptsEarlierBundles(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 4; i++ {
		l.write(t, i)
	}
	must(t, os.WriteFile(l.path(sessionName(2), evidence.ArtifactsDir, "session.log"), []byte("edited\n"), 0o644))
	a := l.session(t, 4)
	if a.Adopted != 3 || a.Index != 3 || a.TreeSize != 4 {
		t.Fatalf("adoption: %+v", a)
	}
	es, err := readEntries(l.path(Dir, EntriesFile))
	must(t, err)
	for i, want := range []string{sessionName(0), sessionName(1), sessionName(3), sessionName(4)} {
		if es[i].Bundle != want || es[i].Adopted != (i < 3) {
			t.Fatalf("entry %d: %+v, want %s", i, es[i], want)
		}
	}
	for _, i := range []int{0, 1, 3} {
		if got, err := VerifyBundle(l.path(sessionName(i)), l.pub); err != nil || got.LatestSize != 4 {
			t.Fatalf("adopted bundle %d: %v %+v", i, err, got)
		}
	}
	res := l.verify(t, nil)
	if len(res.Problems) != 1 || !hasProblem(res, ProblemInserted, sessionName(2)) {
		t.Fatalf("only the bundle that failed to verify is named: %s", problems(res))
	}
	l.session(t, 5)
	if res := l.verify(t, nil); res.Size != 5 || len(res.Problems) != 1 {
		t.Fatalf("later appends adopt nothing more: %+v", res)
	}
}

// TestFastVerify: without reading the bundles, the log still shows deletions, insertions and
// edits of its entries; a bundle replaced in place is what only the full check sees.
func TestFastVerify(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 5; i++ {
		l.session(t, i)
	}
	fast := func() *Result {
		res, err := Verify(l.dir, l.pub, VerifyOptions{Fast: true})
		must(t, err)
		return res
	}
	if res := fast(); !res.OK() || res.Size != 5 || res.Bundles != 5 {
		t.Fatalf("intact, fast: %+v", res)
	}
	copyFile(t, l.path(sessionName(0), evidence.BundleFile), l.path(sessionName(3), evidence.BundleFile))
	if res := fast(); !res.OK() {
		t.Fatalf("a replacement is not what the fast check reads: %s", problems(res))
	}
	if res := l.verify(t, nil); !hasProblem(res, ProblemReplaced, sessionName(3)) {
		t.Fatalf("the full check names the replacement: %s", problems(res))
	}
	must(t, os.RemoveAll(l.path(sessionName(1))))
	l.write(t, 9)
	editEntries(t, l, func(es []Entry) []Entry { es[4].Bundle = sessionName(8); return es })
	res := fast()
	for _, w := range []struct{ kind, bundle string }{{ProblemDeleted, sessionName(1)}, {ProblemInserted, sessionName(9)}, {ProblemEdited, sessionName(8)}} {
		if !hasProblem(res, w.kind, w.bundle) {
			t.Errorf("fast: want %s on %s; got:\n%s", w.kind, w.bundle, problems(res))
		}
	}
}

// TestHostileEvidenceDirectory: what someone who can write the evidence directory (but not
// read the key) can do to the log's own files is refused or named, never followed or waited on.
func TestHostileEvidenceDirectory(t *testing.T) {
	t.Run("the log directory deleted", func(t *testing.T) {
		l := newTestLog(t)
		for i := 0; i < 4; i++ {
			l.session(t, i)
		}
		must(t, os.RemoveAll(l.path(Dir)))
		must(t, os.RemoveAll(l.path(sessionName(2))))
		res := l.verify(t, nil)
		if !hasProblem(res, ProblemEdited, "") || !strings.Contains(problems(res), "the session log is gone") {
			t.Fatalf("a deleted log: %s", problems(res))
		}
		// The next session starts a new log without taking in bundles that proved their
		// place in the old one: they stay named.
		if a := l.session(t, 9); a.Adopted != 0 {
			t.Fatalf("bundles of a deleted log were adopted: %+v", a)
		}
		res = l.verify(t, nil)
		for _, i := range []int{0, 1, 3} {
			if !hasProblem(res, ProblemInserted, sessionName(i)) {
				t.Errorf("bundle %d of the deleted log is not named: %s", i, problems(res))
			}
		}
		if _, err := VerifyBundle(l.path(sessionName(0)), l.pub); err == nil {
			t.Error("a bundle whose log was replaced still verifies its place")
		}
	})
	t.Run("entries.jsonl a symbolic link to another file", func(t *testing.T) {
		l := newTestLog(t)
		l.session(t, 0)
		victim := filepath.Join(t.TempDir(), "victim")
		must(t, os.WriteFile(victim, []byte(strings.Repeat("precious\n", 200)), 0o600))
		must(t, os.Remove(l.path(Dir, EntriesFile)))
		must(t, os.Symlink(victim, l.path(Dir, EntriesFile)))
		if _, err := Append(l.write(t, 1), l.key.Signer); err == nil {
			t.Error("an append wrote through a symbolic link")
		}
		if data, _ := os.ReadFile(victim); string(data) != strings.Repeat("precious\n", 200) {
			t.Error("the file the link pointed at was changed")
		}
	})
	t.Run("the bundle directory a symbolic link", func(t *testing.T) {
		l := newTestLog(t)
		real := l.write(t, 0)
		elsewhere := filepath.Join(t.TempDir(), "moved")
		must(t, os.Rename(real, elsewhere))
		must(t, os.Symlink(elsewhere, real))
		if _, err := Append(real, l.key.Signer); err == nil {
			t.Error("an append wrote a proof through a symbolic link")
		}
	})
	t.Run("a FIFO for a bundle file and a huge line", func(t *testing.T) {
		l := newTestLog(t)
		l.session(t, 0)
		l.session(t, 1)
		must(t, os.Remove(l.path(sessionName(1), evidence.BundleFile)))
		must(t, syscall.Mkfifo(l.path(sessionName(1), evidence.BundleFile), 0o644))
		done := make(chan *Result)
		go func() { res, _ := Verify(l.dir, l.pub, VerifyOptions{}); done <- res }()
		select {
		case res := <-done:
			if !hasProblem(res, ProblemDeleted, sessionName(1)) || !strings.Contains(problems(res), "not a regular file") {
				t.Errorf("a FIFO: %s", problems(res))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("verification blocked on a FIFO")
		}
		appendText(t, l.path(Dir, EntriesFile), strings.Repeat("x", 1<<20)+"\n")
		res := l.verify(t, nil)
		if !strings.Contains(problems(res), "a line longer than") {
			t.Errorf("a huge line: %s", problems(res))
		}
	})
	t.Run("a state signed by another key", func(t *testing.T) {
		l, other := newTestLog(t), newTestLog(t)
		l.session(t, 0)
		editState(t, l, func(st *state) {
			signed, err := signCheckpoint(Checkpoint{Origin: st.Origin, Size: st.Size, Root: mustRoot(t, st)}, other.key.Signer)
			must(t, err)
			st.Checkpoint = signed
		})
		if _, err := Append(l.write(t, 1), l.key.Signer); err == nil || !strings.Contains(err.Error(), "not signed by this key") {
			t.Errorf("a state signed by another key: %v", err)
		}
	})
	t.Run("entries naming paths, not bundles", func(t *testing.T) {
		l := newTestLog(t)
		for i := 0; i < 3; i++ {
			l.session(t, i)
		}
		outside := filepath.Join(filepath.Dir(l.dir), "outside")
		must(t, os.MkdirAll(outside, 0o755))
		copyFile(t, l.path(sessionName(0), evidence.BundleFile), filepath.Join(outside, evidence.BundleFile))
		editEntries(t, l, func(es []Entry) []Entry { es[1].Bundle = "../outside"; es[2].Bundle = "."; return es })
		for _, fast := range []bool{false, true} {
			res, err := Verify(l.dir, l.pub, VerifyOptions{Fast: fast})
			must(t, err)
			if n := strings.Count(problems(res), "is not a directory name"); n != 2 {
				t.Errorf("fast %v: %d entries named as not a directory name, want 2:\n%s", fast, n, problems(res))
			}
		}
	})
	t.Run("verify . inside a bundle", func(t *testing.T) {
		l := newTestLog(t)
		l.session(t, 0)
		t.Chdir(l.path(sessionName(0)))
		if got, err := VerifyBundle(".", l.pub); err != nil || got.LatestSize != 1 {
			t.Errorf("VerifyBundle(.): %v %+v", err, got)
		}
	})
}

// TestRollbackNeedsAKeptCheckpoint: the newest sessions removed and the log cut back to an
// older signed state (entries truncated with it) leave a log that verifies on its own but
// for the bundles left in the directory; without them, only the kept checkpoint shows it.
func TestRollbackNeedsAKeptCheckpoint(t *testing.T) {
	l := newTestLog(t)
	for i := 0; i < 4; i++ {
		l.session(t, i)
		if i == 2 {
			copyFile(t, l.path(Dir, StateFile), l.path(Dir, "state-at-3.json"))
		}
	}
	kept, _ := Latest(l.dir)
	var st state
	readJSON(t, l.path(Dir, "state-at-3.json"), &st)
	data, err := os.ReadFile(l.path(Dir, EntriesFile))
	must(t, err)
	must(t, os.WriteFile(l.path(Dir, EntriesFile), data[:st.Offset], 0o600))
	copyFile(t, l.path(Dir, "state-at-3.json"), l.path(Dir, StateFile))
	must(t, os.Remove(l.path(Dir, "state-at-3.json")))
	if res := l.verify(t, nil); !hasProblem(res, ProblemInserted, sessionName(3)) {
		t.Errorf("the newest bundle, left behind, is named: %s", problems(res))
	}
	must(t, os.RemoveAll(l.path(sessionName(3))))
	if res := l.verify(t, nil); !res.OK() {
		t.Errorf("a clean rollback verifies on its own (expected): %s", problems(res))
	}
	if res := l.verify(t, kept); !hasProblem(res, ProblemSince, "") {
		t.Errorf("the kept checkpoint must show the rollback: %s", problems(res))
	}
}

func mustRoot(t *testing.T, st *state) []byte {
	t.Helper()
	_, rng, err := parseState(mustJSON(t, st))
	must(t, err)
	root, err := rootOf(rng)
	must(t, err)
	return root
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	must(t, err)
	return raw
}

// TestAppendWrittenRefusesAChangedBundle: a bundle replaced between its writing and its
// logging (by a copy of an older one) is not logged as the replacement.
func TestAppendWrittenRefusesAChangedBundle(t *testing.T) {
	l := newTestLog(t)
	l.session(t, 0)
	dir, digest, err := evidence.WriteBundle(l.dir, sessionName(1), evidence.SamplePredicate(sessionName(1)),
		[]evidence.Artifact{{Name: "session.log", Data: []byte("one\n")}}, l.key)
	must(t, err)
	copyFile(t, l.path(sessionName(0), evidence.BundleFile), filepath.Join(dir, evidence.BundleFile))
	if _, err := AppendWritten(dir, digest, l.key.Signer); err == nil || !strings.Contains(err.Error(), "changed between its writing and its logging") {
		t.Fatalf("a swapped bundle: %v", err)
	}
	dir2, digest2, err := evidence.WriteBundle(l.dir, sessionName(2), evidence.SamplePredicate(sessionName(2)),
		[]evidence.Artifact{{Name: "session.log", Data: []byte("two\n")}}, l.key)
	must(t, err)
	if _, err := AppendWritten(dir2, digest2, l.key.Signer); err != nil {
		t.Fatalf("an unchanged bundle: %v", err)
	}
}
