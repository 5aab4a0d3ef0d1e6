package gitrun_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// TestRootRunsGitAsTheRepositoriesOwner: a repository owned by uid 1000 whose configuration
// names a program (an alias running id -u): run through gitrun by root, the program runs as
// uid 1000, never as root, and git's ownership check passes without safe.directory.
func TestRootRunsGitAsTheRepositoriesOwner(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required")
	}
	if os.Getuid() != 0 {
		t.Skip("only root can run git as another user (CI runs as root)")
	}
	repo := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command(git, "init", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command(git, "-C", repo, "config", "alias.whoami", "!id -u").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	_ = filepath.Walk(filepath.Dir(repo), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			_ = os.Lchown(p, 1000, 1000)
		}
		return nil
	})
	for _, d := range []string{filepath.Dir(repo), filepath.Dir(filepath.Dir(repo))} {
		if err := os.Chmod(d, 0o755); err != nil { // the owner must reach it, as in a home
			t.Fatal(err)
		}
	}
	if !gitrun.RunsAsAnother(repo) {
		t.Fatal("RunsAsAnother = false for a repository owned by uid 1000")
	}
	out, err := gitrun.Git{Binary: git}.Output(context.Background(), repo, "whoami")
	if err != nil || out != "1000" {
		t.Fatalf("the repository's program ran as %q (%v), want uid 1000", out, err)
	}
}

func TestAFailureCarriesGitsMessage(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required")
	}
	_, err = gitrun.Git{Binary: git}.Output(context.Background(), t.TempDir(), "rev-parse", "HEAD")
	var ge *gitrun.Error
	if !errors.As(err, &ge) || ge.Stderr == "" {
		t.Fatalf("err = %v, want a *gitrun.Error with git's message", err)
	}
	if _, err := (gitrun.Git{}).Command(context.Background(), t.TempDir(), "status"); err == nil {
		t.Fatal("no git binary: want an error")
	}
}
