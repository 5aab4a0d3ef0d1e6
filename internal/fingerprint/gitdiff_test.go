package fingerprint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestGoGitDiffAppliesLikeGits: the patch computed with go-git (which runs nothing from the
// repository), applied by git to a clean checkout of HEAD, reproduces every tracked change —
// edits, deletions, staged additions, symlinks, mode changes — and leaves out untracked files.
func TestGoGitDiffAppliesLikeGits(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is needed to apply the patch, and CI installs it")
		}
		t.Skip("git is needed to apply the patch")
	}
	repo := t.TempDir()
	runGit(t, repo, "init", "-q")
	files := map[string]string{"a.txt": "one\ntwo\nthree\n", "gone.txt": "bye\n", "dir/b.txt": strings.Repeat("line\n", 50), "run.sh": "#!/bin/sh\n"}
	for name, content := range files {
		_ = os.MkdirAll(filepath.Join(repo, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Symlink("a.txt", filepath.Join(repo, "link"))
	runGit(t, repo, "add", ".")
	runGit(t, repo, "commit", "-q", "-m", "base")

	_ = os.WriteFile(filepath.Join(repo, "a.txt"), []byte("one\n2\nthree\nfour\n"), 0o644)
	_ = os.Remove(filepath.Join(repo, "gone.txt"))
	_ = os.WriteFile(filepath.Join(repo, "dir/b.txt"), []byte(strings.Repeat("line\n", 25)+"middle\n"+strings.Repeat("line\n", 25)), 0o644)
	_ = os.Chmod(filepath.Join(repo, "run.sh"), 0o755)
	_ = os.Remove(filepath.Join(repo, "link"))
	_ = os.Symlink("dir/b.txt", filepath.Join(repo, "link"))
	_ = os.WriteFile(filepath.Join(repo, "staged.txt"), []byte("new and staged\n"), 0o644)
	runGit(t, repo, "add", "staged.txt")
	_ = os.WriteFile(filepath.Join(repo, "untracked.txt"), []byte("not in the diff\n"), 0o644)

	patch, absent := diffWithGoGit(repo)
	if absent != "" {
		t.Fatal(absent)
	}
	if strings.Contains(string(patch), "untracked.txt") {
		t.Error("the diff includes an untracked file; git diff HEAD leaves them out")
	}
	clone := t.TempDir()
	runGit(t, clone, "clone", "-q", repo, ".")
	patchFile := filepath.Join(t.TempDir(), "p.diff")
	_ = os.WriteFile(patchFile, patch, 0o644)
	runGit(t, clone, "apply", "--index", patchFile)
	want := runGit(t, repo, "diff", "HEAD", "--stat")
	got := runGit(t, clone, "diff", "HEAD", "--stat")
	if got != want {
		t.Errorf("applying the go-git patch gives\n%s\nwhere git's own diff is\n%s\npatch:\n%s", got, want, patch)
	}
	for _, name := range []string{"a.txt", "dir/b.txt", "staged.txt"} {
		a, _ := os.ReadFile(filepath.Join(repo, name))
		b, _ := os.ReadFile(filepath.Join(clone, name))
		if string(a) != string(b) {
			t.Errorf("%s: %q after applying, want %q", name, b, a)
		}
	}
}
