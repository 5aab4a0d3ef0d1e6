package fingerprint

import (
	"context"
	"os"
	"os/exec"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
)

var (
	bigRepoOnce sync.Once
	bigRepo     string
	bigRepoErr  error
)

// fiftyThousandFiles generates, once per run, a committed repository of 50,000 files.
func fiftyThousandFiles(b *testing.B) string {
	bigRepoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sosctl-bench-repo-")
		if err != nil {
			bigRepoErr = err
			return
		}
		benchtest.Repository(b, dir, 50_000)
		bigRepo = dir
	})
	if bigRepoErr != nil {
		b.Fatal(bigRepoErr)
	}
	return bigRepo
}

// BenchmarkGitState50k times sourceosctl's git state (CLI reader and go-git fallback)
// against the raw `git rev-parse HEAD && git status --porcelain`, alternating runs, and
// reports the median ratios.
func BenchmarkGitState50k(b *testing.B) {
	git, err := exec.LookPath("git")
	if err != nil {
		b.Skip("git is not installed")
	}
	repo := fiftyThousandFiles(b)
	ctx := context.Background()
	raw := func() {
		_ = exec.Command(git, "-C", repo, "rev-parse", "HEAD").Run()
		_ = exec.Command(git, "-C", repo, "status", "--porcelain").Run()
	}
	ours := func() { ReadGit(ctx, repo, git) }
	goGit := func() { ReadGit(ctx, repo, "") }
	raw() // warm the index and the page cache
	var tRaw, tOurs, tGoGit []time.Duration
	time1 := func(f func()) time.Duration { s := time.Now(); f(); return time.Since(s) }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tRaw = append(tRaw, time1(raw))
		tOurs = append(tOurs, time1(ours))
		if i < 3 { // go-git is slow on 50k files: three samples are enough for its median
			tGoGit = append(tGoGit, time1(goGit))
		}
	}
	b.ReportMetric(float64(median(tRaw).Milliseconds()), "ms-git-cli")
	b.ReportMetric(float64(median(tOurs).Milliseconds()), "ms-sourceosctl")
	b.ReportMetric(ratio(tOurs, tRaw), "ratio-sourceosctl/git")
	b.ReportMetric(ratio(tGoGit, tRaw), "ratio-gogit/git")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ratio(a, b []time.Duration) float64 {
	return float64(median(a)) / float64(median(b))
}
