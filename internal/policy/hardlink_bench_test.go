package policy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

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
	home, repo := fiftyThousandFiles(b, git)
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
	b.ReportMetric(float64(medianDuration(tOurs).Milliseconds()), "ms-hardlinks")
	b.ReportMetric(float64(medianDuration(tGit).Milliseconds()), "ms-git-status")
	b.ReportMetric(float64(medianDuration(tOurs))/float64(medianDuration(tGit)), "ratio")
}

var (
	bigOnce          sync.Once
	bigHome, bigRepo string
	bigErr           error
)

// fiftyThousandFiles generates, once per run, a home holding a committed repository of
// 50,000 files (left in the temporary directory for the run's other benchmarks).
func fiftyThousandFiles(b *testing.B, git string) (home, repo string) {
	bigOnce.Do(func() {
		if bigHome, bigErr = os.MkdirTemp("", "sosctl-bench-links-"); bigErr != nil {
			return
		}
		bigRepo = filepath.Join(bigHome, "dev", "app")
		for i := 0; i < 50_000 && bigErr == nil; i++ {
			sub := filepath.Join(bigRepo, fmt.Sprintf("d%03d", i/500))
			if i%500 == 0 {
				bigErr = os.MkdirAll(sub, 0o755)
			}
			if bigErr == nil {
				bigErr = os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644)
			}
		}
		for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "50k"}} {
			if bigErr == nil {
				if out, err := exec.Command(git, append([]string{"-C", bigRepo, "-c", "gc.auto=0", "-c", "maintenance.auto=false"}, args...)...).CombinedOutput(); err != nil {
					bigErr = fmt.Errorf("git %v: %v: %s", args, err, out)
				}
			}
		}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigHome, bigRepo
}

func medianDuration(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
