package evidencelog

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sourceos/sourceosctl/internal/evidence"
)

// rotate rotates l's log to the key of next and makes next's key the one l's sessions sign
// with, as `evidence key rotate` does.
func (l *testLog) rotate(t *testing.T, next *testLog) *Rotated {
	t.Helper()
	r, err := Rotate(l.dir, l.key.Signer, next.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	l.key, l.pub = next.key, next.pub
	return r
}

// bundleSignedBy checks that VerifyBundle, given v, names signer as the key that appended
// bundle i, and that the bundle's own signature verifies with it.
func bundleSignedBy(t *testing.T, l *testLog, i int, v, signer signature.Verifier) {
	t.Helper()
	dir := l.path(sessionName(i))
	place, err := VerifyBundle(dir, v)
	if err != nil {
		t.Fatalf("bundle %d: %v", i, err)
	}
	if got, want := mustID(t, place.Signer), mustID(t, signer); got != want {
		t.Fatalf("bundle %d: the key named as its signer is %s, want %s", i, fingerprintID(got), fingerprintID(want))
	}
	if _, err := evidence.Verify(dir, place.Signer); err != nil {
		t.Fatalf("bundle %d does not verify with the key its log names: %v", i, err)
	}
}

func mustID(t *testing.T, v signature.Verifier) string {
	t.Helper()
	id, err := keyID(v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRotationKeepsOldBundlesVerifiable(t *testing.T) {
	l, k2, k3, stranger := newTestLog(t), newTestLog(t), newTestLog(t), newTestLog(t)
	k1 := &testLog{key: l.key, pub: l.pub}
	for i := 0; i < 3; i++ {
		l.session(t, i)
	}
	keptBefore, _ := Latest(l.dir)
	if r := l.rotate(t, k2); r.Index != 3 || r.Already {
		t.Fatalf("the rotation must be entry 3: %+v", r)
	}
	// The rotation's checkpoint carries both keys' signatures.
	signed, _ := Latest(l.dir)
	if n := strings.Count(string(signed), "\n— "); n != 2 {
		t.Fatalf("the rotation's checkpoint must be signed by both keys, has %d signatures:\n%s", n, signed)
	}
	for i := 4; i < 6; i++ {
		l.session(t, i)
	}
	keptBetween, _ := Latest(l.dir)
	l.rotate(t, k3)
	l.session(t, 7)

	for _, v := range []*testLog{k1, k2, k3} {
		res, err := Verify(l.dir, v.pub, VerifyOptions{Since: keptBefore})
		if err != nil || !res.OK() || len(res.Keys) != 3 || res.Bundles != 6 || !res.Since.Consistent {
			t.Fatalf("a log rotated twice must verify with each of its keys and a checkpoint kept before: %v %s %+v", err, problems(res), res)
		}
		if res, err := Verify(l.dir, v.pub, VerifyOptions{Since: keptBetween, Fast: true}); err != nil || !res.OK() {
			t.Fatalf("fast, since a checkpoint signed by the middle key: %v %s", err, problems(res))
		}
		// Each bundle is tied to the key that signed it, whichever key the auditor holds.
		bundleSignedBy(t, l, 0, v.pub, k1.pub)
		bundleSignedBy(t, l, 5, v.pub, k2.pub)
		bundleSignedBy(t, l, 7, v.pub, k3.pub)
	}
	want := []string{Fingerprint(mustPub(t, k1)), Fingerprint(mustPub(t, k2)), Fingerprint(mustPub(t, k3))}
	if res := l.verify(t, nil); strings.Join(res.Keys, " ") != strings.Join(want, " ") {
		t.Fatalf("the keys, oldest first: %v, want %v", res.Keys, want)
	}
	// A key that is not in the chain verifies nothing, and says which keys signed.
	res := l.verifyWith(t, stranger.pub)
	if res.OK() || res.Problems[0].Kind != ProblemCheckpoint || !strings.Contains(res.Problems[0].Detail, want[0]+" → "+want[1]) {
		t.Fatalf("a stranger's key: %s", problems(res))
	}
	if _, err := VerifyBundle(l.path(sessionName(0)), stranger.pub); err == nil {
		t.Fatal("a bundle must not verify with a key outside its log's chain")
	}
	// The retired keys can no longer append, and say why.
	_, err := Append(l.write(t, 8), k1.key.Signer)
	var mismatch *KeyMismatchError
	if !errors.As(err, &mismatch) || mismatch.InForce != want[2] {
		t.Fatalf("an append with a retired key: %v", err)
	}
	// Rotating again to the key in force changes nothing (a rotation resumed).
	if r, err := Rotate(l.dir, k2.key.Signer, k3.key.Signer); err != nil || !r.Already {
		t.Fatalf("a repeated rotation: %v %+v", err, r)
	}
}

func mustPub(t *testing.T, l *testLog) any {
	t.Helper()
	pub, err := l.pub.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestRotationStartsTheLogOfADirectoryWithout(t *testing.T) {
	l, k2 := newTestLog(t), newTestLog(t)
	k1 := l.pub
	l.write(t, 0)
	l.write(t, 1)
	r := l.rotate(t, k2)
	if r.Adopted != 2 || r.Index != 2 {
		t.Fatalf("the rotation must adopt the two earlier bundles first: %+v", r)
	}
	l.session(t, 3)
	if res := l.verify(t, nil); !res.OK() || res.Bundles != 3 {
		t.Fatalf("%s", problems(res))
	}
	bundleSignedBy(t, l, 1, l.pub, k1)
	bundleSignedBy(t, l, 3, k1, l.pub)
}

// TestRotationAttacks tries to change a log's keys without holding both: each must be
// refused by a verifier holding either the old or the new key.
func TestRotationAttacks(t *testing.T) {
	cases := []struct {
		name string
		// attack changes the rotated log; thief is a key the attacker holds.
		attack func(t *testing.T, l *testLog, thief *testLog)
		want   string
	}{
		{"the rotations' checkpoints removed", func(t *testing.T, l *testLog, _ *testLog) {
			editState(t, l, func(st *state) { st.Rotations = nil })
		}, "keeps no checkpoint of size 3"},
		{"the old key's signature removed from the rotation", func(t *testing.T, l *testLog, _ *testLog) {
			editState(t, l, func(st *state) { st.Rotations[0] = dropSignature(st.Rotations[0], 1) })
		}, "not signed by both"},
		{"the rotation's new key changed, its leaf made again", func(t *testing.T, l *testLog, thief *testLog) {
			editEntries(t, l, func(es []Entry) []Entry {
				es[2].Key = mustID(t, thief.pub)
				es[2].Leaf = hex.EncodeToString(leafOfKey(es[2].Previous, es[2].Key))
				return es
			})
		}, "the rotation at entry 2: its checkpoint is not signed by both"},
		{"the rotation's previous key changed", func(t *testing.T, l *testLog, thief *testLog) {
			editEntries(t, l, func(es []Entry) []Entry { es[2].Previous = mustID(t, thief.pub); return es })
		}, "was edited"},
		{"a rotation to the thief's key added by hand, signed by the thief alone", func(t *testing.T, l *testLog, thief *testLog) {
			forgeRotation(t, l, thief, false)
		}, "not signed by both"},
		{"a rotation to the thief's key, signed twice by the thief", func(t *testing.T, l *testLog, thief *testLog) {
			forgeRotation(t, l, thief, true)
		}, "not signed by both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, k2, thief := newTestLog(t), newTestLog(t), newTestLog(t)
			k1 := l.pub
			l.session(t, 0)
			l.session(t, 1)
			l.rotate(t, k2)
			l.session(t, 3)
			c.attack(t, l, thief)
			for name, v := range map[string]signature.Verifier{"old": k1, "new": k2.pub, "thief's": thief.pub} {
				res := l.verifyWith(t, v)
				if res.OK() || !strings.Contains(problems(res), c.want) {
					t.Fatalf("verified with the %s key, want a problem saying %q: %s", name, c.want, problems(res))
				}
			}
		})
	}
}

// forgeRotation appends a rotation from the log's key to the thief's, as someone without the
// log's key would have to: the checkpoint signed by the thief (twice, when twice).
func forgeRotation(t *testing.T, l *testLog, thief *testLog, twice bool) {
	t.Helper()
	lg, err := openLog(l.dir)
	must(t, err)
	defer lg.unlock()
	must(t, lg.load(l.pub))
	from, to := mustID(t, l.pub), mustID(t, thief.pub)
	signers := []signature.SignerVerifier{thief.key.Signer}
	if twice {
		signers = append(signers, thief.key.Signer)
	}
	if _, err := lg.commit([]Entry{{Kind: KindKey, Previous: from, Key: to, Leaf: hex.EncodeToString(leafOfKey(from, to))}}, signers...); err != nil {
		t.Fatal(err)
	}
}

// dropSignature removes signature line i of a signed note.
func dropSignature(signed string, i int) string {
	body, sigs, _ := strings.Cut(signed, "\n\n")
	lines := strings.Split(strings.TrimSuffix(sigs, "\n"), "\n")
	lines = append(lines[:i], lines[i+1:]...)
	return body + "\n\n" + strings.Join(lines, "\n") + "\n"
}

// TestStolenOldKeyAfterRotation: whoever steals the retired key can fork the log from before
// the rotation. An auditor holding the new key, or a checkpoint kept since the rotation,
// sees it.
func TestStolenOldKeyAfterRotation(t *testing.T) {
	l, k2, thief := newTestLog(t), newTestLog(t), newTestLog(t)
	k1 := &testLog{key: l.key, pub: l.pub}
	l.session(t, 0)
	l.rotate(t, k2)
	l.session(t, 2)
	kept, _ := Latest(l.dir)
	// The fork: the log cut back to before the rotation, rotated to the thief's key by the
	// stolen old key, and a session of the thief's appended.
	editEntries(t, l, func(es []Entry) []Entry { return es[:1] })
	editState(t, l, func(st *state) {
		st.Size, st.Key, st.Rotations = 1, "", nil
		raw, _ := os.ReadFile(l.path(Dir, EntriesFile))
		st.Offset = int64(len(raw))
		rng := factory.NewEmptyRange(0)
		leaf, _ := hex.DecodeString(readEntriesT(t, l)[0].Leaf)
		must(t, rng.Append(leaf, nil))
		st.Range = hexAll(rng.Hashes())
		root, _ := rootOf(rng)
		st.Checkpoint, _ = signCheckpoint(Checkpoint{Origin: st.Origin, Size: 1, Root: root}, k1.key.Signer)
	})
	must(t, os.RemoveAll(l.path(sessionName(2))))
	if _, err := Rotate(l.dir, k1.key.Signer, thief.key.Signer); err != nil {
		t.Fatal(err)
	}
	l.key, l.pub = thief.key, thief.pub
	l.session(t, 2)

	if res := l.verifyWith(t, k2.pub); res.OK() || res.Problems[0].Kind != ProblemCheckpoint {
		t.Fatalf("the new key is not in the forked chain: %s", problems(res))
	}
	// Holding only the stolen key, the fork verifies: the kept checkpoint is what shows it.
	if res := l.verifyWith(t, k1.pub); !res.OK() {
		t.Fatalf("the fork is consistent under the old key: %s", problems(res))
	}
	if _, err := Verify(l.dir, k1.pub, VerifyOptions{Since: kept}); err == nil {
		t.Fatal("a checkpoint kept after the rotation must not be consistent with the fork")
	}
}

func readEntriesT(t *testing.T, l *testLog) []Entry {
	t.Helper()
	es, err := readEntries(filepath.Join(l.dir, Dir, EntriesFile))
	must(t, err)
	return es
}

func TestRotationEntriesAreStrict(t *testing.T) {
	for name, edit := range map[string]func(*Entry){
		"a bundle name on a rotation": func(e *Entry) { e.Bundle = sessionName(0) },
		"a rotation without its key":  func(e *Entry) { e.Key = "" },
		"a bundle entry naming a key": func(e *Entry) { e.Kind, e.SHA256, e.Bundle = KindBundle, strings.Repeat("0", 64), "x" },
		"an unknown kind":             func(e *Entry) { e.Kind = "witness" },
	} {
		t.Run(name, func(t *testing.T) {
			l, k2 := newTestLog(t), newTestLog(t)
			l.session(t, 0)
			l.rotate(t, k2)
			editEntries(t, l, func(es []Entry) []Entry { edit(&es[1]); return es })
			res := l.verify(t, nil)
			if !hasProblem(res, ProblemEdited, "") || !strings.Contains(problems(res), "line 2 is not a log entry") {
				t.Fatalf("%s", problems(res))
			}
		})
	}
}

// TestRetiredKeyCannotComeBack: whoever kept the retired key cuts the log back to the
// rotation and adds a rotation from the new key back to the old one, claiming the index of
// the real rotation (so the real, doubly signed checkpoint seems to prove it), then signs on
// with the old key. Found by review; every variant must be refused under the new key.
func TestRetiredKeyCannotComeBack(t *testing.T) {
	for _, claimed := range []string{"the real rotation's index", "its own index"} {
		t.Run(claimed, func(t *testing.T) {
			l, k2 := newTestLog(t), newTestLog(t)
			k1 := &testLog{key: l.key, pub: l.pub}
			l.session(t, 0)
			l.rotate(t, k2) // entry 1
			back := Entry{Kind: KindKey, Previous: mustID(t, k2.pub), Key: mustID(t, k1.pub)}
			back.Leaf = hex.EncodeToString(leafOfKey(back.Previous, back.Key))
			lg, err := openLog(l.dir)
			must(t, err)
			must(t, lg.load(k2.pub))
			// Signed by the thief's old key only (the new key is not theirs); the index
			// claimed is written over the one commit gives.
			_, err = lg.commit([]Entry{back}, k1.key.Signer)
			lg.unlock()
			must(t, err)
			if claimed == "the real rotation's index" {
				editEntries(t, l, func(es []Entry) []Entry { es[2].Index = 1; return es })
			}
			editState(t, l, func(st *state) { st.Key = mustID(t, k1.pub) })
			l.key, l.pub = k1.key, k1.pub
			forged := l.write(t, 3)
			if _, err := Append(forged, k1.key.Signer); err != nil {
				t.Fatal(err)
			}
			if res := l.verifyWith(t, k2.pub); res.OK() || !hasProblem(res, ProblemCheckpoint, "") {
				t.Fatalf("verified with the new key: %s", problems(res))
			}
			if place, err := VerifyBundle(forged, k2.pub); err == nil {
				t.Fatalf("the bundle the retired key signed after its retirement is tied to the new key: %+v", place)
			}
		})
	}
}

func TestRotationRefusesALogThatDoesNotVerify(t *testing.T) {
	l, k2 := newTestLog(t), newTestLog(t)
	l.session(t, 0)
	l.session(t, 1)
	must(t, os.WriteFile(l.path(sessionName(0), "artifacts", "session.log"), []byte("edited"), 0o644))
	must(t, os.RemoveAll(l.path(sessionName(1))))
	if _, err := Rotate(l.dir, l.key.Signer, k2.key.Signer); err == nil || !strings.Contains(err.Error(), "DELETED") {
		t.Fatalf("a rotation over a log with a deleted bundle: %v", err)
	}
}
