package evidencelog

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/evidence"
)

// syntheticLog makes a log of n entries in l.dir as appends would have left it, fast: each
// bundle directory holds an attestation.sigstore.json of a real bundle's size (7 KiB of
// random bytes: the log hashes that file, it does not parse it) and its inclusion proof
// against the final signed checkpoint. With bundles false only the log's own files are
// written (all an append reads).
func syntheticLog(tb testing.TB, l *testLog, n int, bundles bool) {
	tb.Helper()
	logDir := l.path(Dir)
	must(tb, os.MkdirAll(logDir, 0o700))
	entries := make([]Entry, n)
	leaves := make([][]byte, n)
	var lines []byte
	rng := factory.NewEmptyRange(0)
	body := make([]byte, 7<<10)
	for i := range entries {
		name := fmt.Sprintf("20261202t000000z-%012d", i)
		if bundles {
			must(tb, os.MkdirAll(l.path(name), 0o755))
			_, _ = rand.Read(body[:64])
			must(tb, os.WriteFile(l.path(name, evidence.BundleFile), body, 0o644))
		}
		digest := sha256.Sum256(body)
		leaves[i] = leafOf(name, digest[:])
		entries[i] = Entry{Index: uint64(i), Kind: KindBundle, Bundle: name, SHA256: hex.EncodeToString(digest[:]), Leaf: hex.EncodeToString(leaves[i])}
		line, _ := json.Marshal(entries[i])
		lines = append(append(lines, line...), '\n')
		must(tb, rng.Append(leaves[i], nil))
	}
	root, err := rootOf(rng)
	must(tb, err)
	origin := OriginPrefix + "0123456789abcdef"
	signed, err := signCheckpoint(Checkpoint{Origin: origin, Size: uint64(n), Root: root}, l.key.Signer)
	must(tb, err)
	must(tb, os.WriteFile(filepath.Join(logDir, EntriesFile), lines, 0o600))
	raw, _ := json.Marshal(state{Version: 1, Origin: origin, Size: uint64(n), Offset: int64(len(lines)), Range: hexAll(rng.Hashes()), Checkpoint: signed})
	must(tb, atomicfile.Write(filepath.Join(logDir, StateFile), raw, 0o600, atomicfile.Options{}))
	if bundles {
		must(tb, writeAdoptedProofs(l.dir, entries, leaves, signed))
	}
}

// BenchmarkAppend100k: appending a session's bundle to a log of 100,000 entries, against
// appending to a log of 10 — the same work but for the log's size, which an append must not
// feel (lock, compact range, entry line synced, checkpoint signed, state and proof written).
func BenchmarkAppend100k(b *testing.B) {
	big, small := newTestLog(b), newTestLog(b)
	syntheticLog(b, big, 100_000, false)
	syntheticLog(b, small, 10, false)
	// Bundles are written beforehand: only the append is timed (writing and signing the
	// bundle is the session's, measured by evidence's BenchmarkSignBundle).
	queue := func(l *testLog, from int) func() error {
		var dirs []string
		for i := 0; i < 8+7*b.N; i++ {
			dirs = append(dirs, l.write(b, from+i))
		}
		return func() error {
			dir := dirs[0]
			dirs = dirs[1:]
			_, err := Append(dir, l.key.Signer)
			return err
		}
	}
	benchtest.Pairs(b, queue(big, 1_000_000), queue(small, 2_000_000), "100k", "10")
}

// BenchmarkLogVerify100k: `evidence log verify` of a log of 100,000 bundles.
//
// fast: the log alone (entries parsed and bound to their leaves, the root recomputed, the
// checkpoint's signature, the directory listed for deleted and inserted bundles), against
// the least any check of 100,000 entries does: reading entries.jsonl and SHA-256-hashing
// each line.
//
// full: also every bundle's file hashed and its inclusion proof read and checked, against
// the I/O that cannot be avoided for it: reading and hashing those two files per bundle,
// one after another.
func BenchmarkLogVerify100k(b *testing.B) {
	l := newTestLog(b)
	syntheticLog(b, l, 100_000, true)
	verify := func(fast bool) func() error {
		return func() error {
			res, err := Verify(l.dir, l.pub, VerifyOptions{Fast: fast})
			if err == nil && (!res.OK() || res.Size != 100_000) {
				err = fmt.Errorf("%d problems, size %d", len(res.Problems), res.Size)
			}
			return err
		}
	}
	b.Run("fast", func(b *testing.B) {
		hashLines := func() error {
			data, err := os.ReadFile(l.path(Dir, EntriesFile))
			for _, line := range bytes.Split(data, []byte("\n")) {
				sha256.Sum256(line)
			}
			return err
		}
		benchtest.Pairs(b, verify(true), hashLines, "log-verify-fast", "read+hash-lines")
	})
	b.Run("full", func(b *testing.B) {
		hashAll := func() error {
			for i := 0; i < 100_000; i++ {
				for _, f := range []string{evidence.BundleFile, InclusionFile} {
					data, err := os.ReadFile(l.path(fmt.Sprintf("20261202t000000z-%012d", i), f))
					if err != nil {
						return err
					}
					sha256.Sum256(data)
				}
			}
			return nil
		}
		benchtest.Pairs(b, verify(false), hashAll, "log-verify", "read+hash-files")
	})
}

// BenchmarkLogVerifyRotated100k: `evidence log verify --fast` of a log of 100,000 bundles
// whose key was rotated at its end, given the old key (the chain is followed: the rotation's
// entry, its checkpoint signed by both keys, the root of the log up to it), against the same
// log never rotated.
func BenchmarkLogVerifyRotated100k(b *testing.B) {
	plain := newTestLog(b)
	syntheticLog(b, plain, 100_000, true)
	rotated := &testLog{dir: filepath.Join(filepath.Dir(plain.dir), "rotated"), key: plain.key, pub: plain.pub}
	linkTree(b, plain.dir, rotated.dir)
	if _, err := Rotate(rotated.dir, plain.key.Signer, newTestLog(b).key.Signer); err != nil {
		b.Fatal(err)
	}
	verify := func(l *testLog, keys int) func() error {
		return func() error {
			res, err := Verify(l.dir, plain.pub, VerifyOptions{Fast: true})
			if err == nil && (!res.OK() || len(res.Keys) != keys) {
				err = fmt.Errorf("%d problems, %d keys", len(res.Problems), len(res.Keys))
			}
			return err
		}
	}
	benchtest.Pairs(b, verify(rotated, 2), verify(plain, 1), "rotated", "never-rotated")
}

// linkTree copies the directory tree from to to, its files as hard links but for the log's
// own files (which appends write in place).
func linkTree(tb testing.TB, from, to string) {
	tb.Helper()
	must(tb, filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if filepath.Dir(rel) == Dir {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(to, rel), data, 0o600)
		}
		return os.Link(path, filepath.Join(to, rel))
	}))
}
