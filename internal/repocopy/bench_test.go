package repocopy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// BenchmarkCopy measures a session's copy on a 50,000-file repository against `git status`
// on the same repository, in alternating pairs (as make bench does for sessions):
// collect-unchanged is the end of a session that changed nothing (Changed reads the upper
// layer's names; Unchanged records it), prepare is making the copy (git status with the
// ignored files, the branch, the configuration, the whiteouts).
func BenchmarkCopy(b *testing.B) {
	git, err := exec.LookPath("git")
	if err != nil {
		b.Fatal("git is required")
	}
	repo := filepath.Join(b.TempDir(), "repo")
	benchtest.Repository(b, repo, 50_000)
	g := gitrun.Git{Binary: git}
	status := func() error { return exec.Command(git, "-C", repo, "status", "--porcelain").Run() }
	state := b.TempDir()
	n := 0
	prepare := func() (*repocopy.Copy, error) {
		n++
		c := repocopy.Plan(state, fmt.Sprintf("s%d", n), repo, "")
		for _, d := range []string{c.Upper(), c.Work(), c.Out()} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
		_, err := repocopy.Prepare(context.Background(), g, c, nil, nil, time.Now())
		return c, err
	}
	b.Run("collect-unchanged-50k", func(b *testing.B) {
		c, err := prepare()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Remove()
		collect := func() error {
			changed, err := c.Changed()
			if err == nil && changed {
				err = fmt.Errorf("an untouched copy is reported changed")
			}
			if err == nil {
				err = c.Unchanged()
			}
			return err
		}
		benchtest.Pairs(b, collect, status, "sourceosctl", "git-status")
		b.ReportMetric(float64(c.DiskUsage()), "copy-bytes")
	})
	b.Run("prepare-50k", func(b *testing.B) {
		var made []*repocopy.Copy
		defer func() {
			for _, c := range made {
				_ = c.Remove()
			}
		}()
		benchtest.Pairs(b, func() error {
			c, err := prepare()
			if c != nil {
				made = append(made, c)
			}
			return err
		}, status, "sourceosctl", "git-status")
	})
}
