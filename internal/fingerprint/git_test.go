package fingerprint

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestStripCredentials(t *testing.T) {
	tests := map[string]string{
		"https://user:ghp_token@github.com/o/r.git":   "https://github.com/o/r.git",
		"https://x-access-token:abc@example.com/r":    "https://example.com/r",
		"https://example.com/r?private_token=abc&a=b": "https://example.com/r?a=b",
		"ssh://deploy@host:22/r.git":                  "ssh://host:22/r.git",
		"git@github.com:o/r.git":                      "git@github.com:o/r.git",
		"alice@host:r.git":                            "host:r.git",
		"/srv/git/r.git":                              "/srv/git/r.git",
	}
	for in, want := range tests {
		if got := StripCredentials(in); got != want {
			t.Errorf("StripCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestBothReadersAgree reads the same repository with the git CLI and go-git.
func TestBothReadersAgree(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	gitCmd(t, dir, "init", "-q", "-b", "main")
	gitCmd(t, dir, "remote", "add", "origin", "https://bob:secret@example.com/app.git")
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, dir, "add", "a")
	gitCmd(t, dir, "commit", "-q", "-m", "one")
	head := gitCmd(t, dir, "rev-parse", "HEAD")
	tree := gitCmd(t, dir, "rev-parse", "HEAD^{tree}")
	ctx := context.Background()
	for _, dirty := range []bool{false, true} {
		if dirty {
			_ = os.WriteFile(filepath.Join(dir, "a"), []byte("changed"), 0o644)
		}
		for _, bin := range []string{git, ""} {
			s := ReadGit(ctx, dir, bin)
			want := GitState{Commit: head, Tree: tree, Branch: "main", Dirty: dirty, Remote: "https://example.com/app.git", Reader: s.Reader}
			if s != want {
				t.Errorf("reader %s, dirty=%v: %+v\nwant %+v", s.Reader, dirty, s, want)
			}
		}
	}
	if diff, why := Diff(ctx, dir, git); !strings.Contains(string(diff), "+changed") {
		t.Errorf("diff = %q (%s)", diff, why)
	}
}

func TestAbsentStatesSayWhy(t *testing.T) {
	git, _ := exec.LookPath("git")
	dir := t.TempDir()
	for _, bin := range []string{git, ""} {
		if s := ReadGit(context.Background(), dir, bin); s.Absent != "not a git work tree" || s.Commit != "" {
			t.Errorf("reader %q on a plain directory: %+v", bin, s)
		}
	}
	if git == "" {
		return
	}
	gitCmd(t, dir, "init", "-q")
	gitCmd(t, dir, "config", "extensions.worktreeConfig", "true")
	gitCmd(t, dir, "config", "core.repositoryformatversion", "1")
	gitCmd(t, dir, "commit", "-q", "--allow-empty", "-m", "x")
	if s := ReadGit(context.Background(), dir, ""); !strings.HasPrefix(s.Absent, "go-git cannot read this repository") {
		t.Errorf("go-git on an extensions.worktreeConfig repository: %+v", s)
	}
	if s := ReadGit(context.Background(), dir, git); s.Commit == "" {
		t.Errorf("the git CLI must read it: %+v", s)
	}
}
