package collect_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/collect"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// fixture is a user's repository, the copy as the session left it (the merged view) and the
// names its upper layer holds — built with real git, the overlay emulated with a full copy.
type fixture struct {
	user, workspace, upper, baseGit, out, base string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{user: filepath.Join(root, "user"), workspace: filepath.Join(root, "ws"), upper: filepath.Join(root, "upper"),
		out: filepath.Join(root, "out")}
	write(t, filepath.Join(f.user, "a.txt"), "one\n", 0o644)
	write(t, filepath.Join(f.user, "dir", "b.txt"), "bee\n", 0o644)
	write(t, filepath.Join(f.user, "dir", "keep.txt"), "keep\n", 0o644)
	write(t, filepath.Join(f.user, "run.sh"), "#!/bin/sh\n", 0o755)
	write(t, filepath.Join(f.user, ".gitignore"), "*.log\nnode_modules/\n", 0o644)
	if err := os.Symlink("a.txt", filepath.Join(f.user, "link")); err != nil {
		t.Fatal(err)
	}
	git(t, root, "init", "-q", "-b", "main", f.user)
	git(t, f.user, "add", "-A")
	git(t, f.user, "commit", "-q", "-m", "base")
	f.base = git(t, f.user, "rev-parse", "HEAD")
	f.baseGit = filepath.Join(f.user, ".git")
	if out, err := exec.Command("cp", "-a", f.user, f.workspace).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for _, d := range []string{f.upper, f.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git(t, f.workspace, "checkout", "-q", "-b", "agent/s1")
	// The agent's own .git state lives in the upper layer.
	write(t, filepath.Join(f.upper, ".git", "HEAD"), "ref: refs/heads/agent/s1\n", 0o644)
	return f
}

// touch records rel in the upper layer (a write, or a deletion's whiteout: the collector
// reads the upper layer's names only).
func (f *fixture) touch(t *testing.T, rel string) {
	t.Helper()
	p := filepath.Join(f.upper, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); err != nil {
		write(t, p, "", 0o644)
	}
}

func (f *fixture) run(t *testing.T) collect.Manifest {
	t.Helper()
	m, err := collect.Run(collect.Request{Workspace: f.workspace, Upper: f.upper, BaseGit: f.baseGit, Out: f.out,
		Session: "s1", Branch: "agent/s1", Base: f.base, Date: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.out, collect.ManifestFile))
	var onDisk collect.Manifest
	if err != nil || json.Unmarshal(raw, &onDisk) != nil || onDisk.Head != m.Head {
		t.Fatalf("manifest on disk %s (%v), returned %+v", raw, err, m)
	}
	return m
}

// fetch brings the bundle into a fresh clone of the user's repository, as the host does.
func (f *fixture) fetch(t *testing.T) string {
	t.Helper()
	clone := filepath.Join(t.TempDir(), "clone")
	git(t, filepath.Dir(clone), "clone", "-q", f.user, clone)
	git(t, clone, "-c", "transfer.fsckObjects=true", "fetch", "-q", filepath.Join(f.out, collect.BundleFile), "refs/heads/agent/s1:refs/heads/agent/s1")
	return clone
}

func TestCollectBringsCommitsAndLeftovers(t *testing.T) {
	f := newFixture(t)
	// A commit of the agent's own...
	write(t, filepath.Join(f.workspace, "a.txt"), "two\n", 0o644)
	git(t, f.workspace, "commit", "-q", "-am", "agent: change a\n\nCo-authored-by: x <x@example.com>")
	f.touch(t, "a.txt")
	// ...and what it left uncommitted: a new file, a deletion, a mode change, an ignored
	// log and node_modules, a nested repository, a new directory.
	write(t, filepath.Join(f.workspace, "new.txt"), "new\n", 0o644)
	f.touch(t, "new.txt")
	if err := os.Remove(filepath.Join(f.workspace, "dir", "b.txt")); err != nil {
		t.Fatal(err)
	}
	f.touch(t, "dir/b.txt")
	if err := os.Chmod(filepath.Join(f.workspace, "run.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.touch(t, "run.sh")
	write(t, filepath.Join(f.workspace, "debug.log"), "noise\n", 0o644)
	f.touch(t, "debug.log")
	write(t, filepath.Join(f.workspace, "node_modules", "p", "index.js"), "x\n", 0o644)
	f.touch(t, "node_modules/p/index.js")
	write(t, filepath.Join(f.workspace, "nested", ".git", "config"), "[core]\n\tfsmonitor = touch /tmp/fired\n", 0o644)
	f.touch(t, "nested/.git/config")
	write(t, filepath.Join(f.workspace, "src", "deep", "main.go"), "package main\n", 0o644)
	f.touch(t, "src/deep/main.go")

	m := f.run(t)
	if len(m.Commits) != 2 || m.Leftover == "" || m.Head != m.Leftover {
		t.Fatalf("manifest = %+v, want the agent's commit and a leftover commit", m)
	}
	clone := f.fetch(t)
	log := git(t, clone, "log", "--format=%s%n%(trailers:key=Sourceos-Session,valueonly)%(trailers:key=Co-authored-by,valueonly)--", f.base+"..agent/s1")
	trailers := 0
	for _, l := range strings.Split(log, "\n") {
		if l == "s1" {
			trailers++
		}
	}
	if trailers != 2 || !strings.Contains(log, "agent: change a") || !strings.Contains(log, "x <x@example.com>") {
		t.Errorf("commits on the branch (each must carry the session's trailer, the agent's own kept):\n%s", log)
	}
	files := git(t, clone, "ls-tree", "-r", "--format=%(objectmode) %(path)", "agent/s1")
	for _, want := range []string{"100644 a.txt", "100644 new.txt", "100644 dir/keep.txt", "100644 run.sh", "120000 link", "100644 src/deep/main.go"} {
		if !strings.Contains(files, want+"\n") && !strings.HasSuffix(files, want) {
			t.Errorf("want %q on the branch:\n%s", want, files)
		}
	}
	for _, absent := range []string{"dir/b.txt", "debug.log", "node_modules", "nested"} {
		if strings.Contains(files, " "+absent) {
			t.Errorf("%s must not be on the branch:\n%s", absent, files)
		}
	}
	if got := git(t, clone, "show", "agent/s1:a.txt"); got != "two" {
		t.Errorf("a.txt on the branch = %q", got)
	}
	if len(m.Skipped) != 1 || !strings.Contains(m.Skipped[0], "nested/") {
		t.Errorf("skipped = %v, want the nested repository", m.Skipped)
	}
}

func TestAnUntouchedCopyBringsNothing(t *testing.T) {
	f := newFixture(t)
	f.touch(t, ".git/index") // git status in the copy rewrites its index
	m := f.run(t)
	if m.Head != f.base || len(m.Commits) != 0 || m.Leftover != "" {
		t.Fatalf("manifest = %+v, want the base and nothing else", m)
	}
	if _, err := os.Stat(filepath.Join(f.out, collect.BundleFile)); !os.IsNotExist(err) {
		t.Fatalf("a bundle was written for an untouched copy: %v", err)
	}
}

func TestOnlyCommitsNoLeftover(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.workspace, "c.txt"), "c\n", 0o644)
	git(t, f.workspace, "add", "c.txt")
	git(t, f.workspace, "commit", "-q", "-m", "add c")
	f.touch(t, "c.txt")
	m := f.run(t)
	if len(m.Commits) != 1 || m.Leftover != "" {
		t.Fatalf("manifest = %+v, want one rewritten commit and no leftover", m)
	}
	clone := f.fetch(t)
	if got := git(t, clone, "rev-parse", "agent/s1"); got != m.Head {
		t.Fatalf("branch at %s, manifest says %s", got, m.Head)
	}
	if msg := git(t, clone, "log", "-1", "--format=%B", "agent/s1"); msg != "add c\n\nSourceos-Session: s1" {
		t.Errorf("message = %q", msg)
	}
}

// TestCollectWhenTheAgentReplacedItsGitDirectory: an agent that removed the copy's .git, or
// made it a file or a link, has no commits to bring — and its files still come back as the
// leftover commit on the base, read with the user's objects (the copy's are gone).
func TestCollectWhenTheAgentReplacedItsGitDirectory(t *testing.T) {
	for name, replace := range map[string]func(t *testing.T, gitDir string){
		"removed": func(*testing.T, string) {},
		"a gitdir file": func(t *testing.T, gitDir string) {
			write(t, gitDir, "gitdir: /elsewhere/.git\n", 0o644)
		},
		"a link": func(t *testing.T, gitDir string) {
			if err := os.Symlink("/sourceos-collect/base-git", gitDir); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			gitDir := filepath.Join(f.workspace, ".git")
			if err := os.RemoveAll(gitDir); err != nil {
				t.Fatal(err)
			}
			replace(t, gitDir)
			write(t, filepath.Join(f.workspace, "a.txt"), "changed\n", 0o644)
			f.touch(t, "a.txt")
			f.touch(t, ".git/x")
			m := f.run(t)
			if m.Leftover == "" || len(m.Commits) != 1 || m.Head != m.Leftover {
				t.Fatalf("want one leftover commit, got %+v", m)
			}
			clone := f.fetch(t)
			if got := git(t, clone, "show", "agent/s1:a.txt"); got != "changed" {
				t.Errorf("a.txt on the branch: %q", got)
			}
			if parent := git(t, clone, "rev-parse", "agent/s1^"); parent != f.base {
				t.Errorf("the leftover's parent is %s, want the base %s", parent, f.base)
			}
		})
	}
}
