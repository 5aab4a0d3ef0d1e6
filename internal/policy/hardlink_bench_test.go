package policy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/policy"
)

// BenchmarkHardLinks50k times the hard-link check of a 50,000-file repository (no links in
// it) against `git status --porcelain` on the same repository, alternating runs, and reports
// the medians and their ratio: when no protected file has a second link (the usual home: the
// protected side settles it), and when one has a second name outside the repository (the
// whole repository must be walked).
func BenchmarkHardLinks50k(b *testing.B) {
	git, err := exec.LookPath("git")
	if err != nil {
		b.Skip("git is not installed")
	}
	home, repo := fiftyThousandFiles(b)
	for _, c := range []struct {
		name   string
		linked bool
	}{{"no-linked-protected-file", false}, {"a-linked-protected-file", true}} {
		b.Run(c.name, func(b *testing.B) {
			key, backup := filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(home, "backup-id_ed25519")
			_ = os.Remove(backup)
			if c.linked {
				if err := os.MkdirAll(filepath.Dir(key), 0o700); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(key, []byte("key"), 0o600); err != nil {
					b.Fatal(err)
				}
				if err := os.Link(key, backup); err != nil {
					b.Fatal(err)
				}
				defer os.Remove(backup)
			}
			h := policy.Host{OS: "linux", Home: home}
			d := policy.Decide(mustProfile(b, ""), policy.Request{Tool: "shell", Repo: repo}, h)
			check := func() {
				if r, err := policy.HardLinks(context.Background(), d, h); err != nil || len(r) > 0 {
					b.Fatalf("HardLinks = %v, %v", r, err)
				}
			}
			status := func() { _ = exec.Command(git, "-C", repo, "status", "--porcelain").Run() }
			check()
			status()
			timed := func(f func()) time.Duration { s := time.Now(); f(); return time.Since(s) }
			var tOurs, tGit []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tOurs = append(tOurs, timed(check))
				tGit = append(tGit, timed(status))
			}
			b.ReportMetric(float64(benchtest.Median(tOurs).Microseconds())/1000, "ms-hardlinks")
			b.ReportMetric(float64(benchtest.Median(tGit).Microseconds())/1000, "ms-git-status")
			b.ReportMetric(float64(benchtest.Median(tOurs))/float64(benchtest.Median(tGit)), "ratio")
		})
	}
}

var (
	bigOnce          sync.Once
	bigHome, bigRepo string
	bigErr           error
)

// fiftyThousandFiles generates, once per run, a home holding a committed repository of
// 50,000 files (left in the temporary directory for the run's other benchmarks).
func fiftyThousandFiles(b *testing.B) (home, repo string) {
	bigOnce.Do(func() {
		if bigHome, bigErr = os.MkdirTemp("", "sosctl-bench-links-"); bigErr != nil {
			return
		}
		bigRepo = filepath.Join(bigHome, "dev", "app")
		benchtest.Repository(b, bigRepo, 50_000)
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigHome, bigRepo
}
