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

// BenchmarkHardLinks50k times the hard-link check of a 50,000-file repository (no links:
// the walk for files with more than one link) against `git status --porcelain` on the same
// repository, alternating runs, and reports the medians and their ratio.
func BenchmarkHardLinks50k(b *testing.B) {
	git, err := exec.LookPath("git")
	if err != nil {
		b.Skip("git is not installed")
	}
	home, repo := fiftyThousandFiles(b)
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
	b.ReportMetric(float64(benchtest.Median(tOurs).Milliseconds()), "ms-hardlinks")
	b.ReportMetric(float64(benchtest.Median(tGit).Milliseconds()), "ms-git-status")
	b.ReportMetric(float64(benchtest.Median(tOurs))/float64(benchtest.Median(tGit)), "ratio")
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
