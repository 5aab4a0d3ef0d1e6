package repocopy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// gitInWith is gitIn with stdin.
func gitInWith(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=u", "-c", "user.email=u@example.com", "-c", "core.fsmonitor=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func put(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// userRepo is a committed repository with a remote holding a token, config that names
// programs, an ignored .env and build directory, and an untracked and a modified file.
func userRepo(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "app")
	put(t, filepath.Join(repo, "main.go"), "package main\n")
	put(t, filepath.Join(repo, ".gitignore"), ".env\nbuild/\nnode_modules/\n")
	gitIn(t, filepath.Dir(repo), "init", "-q", "-b", "main", repo)
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", "base")
	for _, kv := range [][2]string{{"remote.origin.url", "https://user:ghp_secret@github.com/o/app.git"},
		{"remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"}, {"core.fsmonitor", "touch /tmp/fired"},
		{"core.hooksPath", "/tmp/hooks"}, {"credential.helper", "store"}, {"http.extraHeader", "Authorization: Bearer x"},
		{"include.path", "/etc/evil"}, {"alias.st", "!sh -c id"}, {"remote.evil.url", "ext::sh -c touch% /tmp/fired"}} {
		gitIn(t, repo, "config", kv[0], kv[1])
	}
	put(t, filepath.Join(repo, ".env"), "API_KEY=secret\n")
	put(t, filepath.Join(repo, "build", "out.bin"), "bin")
	put(t, filepath.Join(repo, "node_modules", "x", "index.js"), "x")
	put(t, filepath.Join(repo, "main.go"), "package main // edited\n")
	put(t, filepath.Join(repo, "notes.txt"), "untracked\n")
	return repo
}

func prepare(t *testing.T, repo string, include ...string) (*repocopy.Copy, string) {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is required")
	}
	state := t.TempDir()
	c := repocopy.Plan(state, "s1", repo, "")
	st, err := repocopy.Prepare(context.Background(), gitrun.Git{Binary: git}, c, include, nil, time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Dirty || st.Commit != c.Head || st.Branch != "main" {
		t.Fatalf("state = %+v, want the dirty main branch at %s", st, c.Head)
	}
	return c, state
}

func TestPrepareSnapshotsUncommittedChangesWithoutTouchingTheRepository(t *testing.T) {
	repo := userRepo(t)
	before := gitIn(t, repo, "status", "--porcelain", "--ignored")
	refsBefore := gitIn(t, repo, "for-each-ref")
	c, _ := prepare(t, repo)
	if c.Snapshot == "" || c.Base != c.Snapshot || c.Branch != "agent/s1" {
		t.Fatalf("copy = %+v, want a snapshot as the base of agent/s1", c)
	}
	if got := gitIn(t, repo, "status", "--porcelain", "--ignored"); got != before {
		t.Errorf("the user's status changed:\nbefore %s\nafter  %s", before, got)
	}
	if got := gitIn(t, repo, "for-each-ref"); got != refsBefore {
		t.Errorf("the user's refs changed:\n%s", got)
	}
	// The snapshot holds the edit and the untracked file, never the ignored ones.
	files := gitIn(t, repo, "ls-tree", "-r", "--name-only", c.Snapshot)
	if files != ".gitignore\nmain.go\nnotes.txt" {
		t.Errorf("snapshot files:\n%s", files)
	}
	if got := gitIn(t, repo, "show", c.Snapshot+":main.go"); got != "package main // edited" {
		t.Errorf("snapshot main.go = %q", got)
	}
	if msg := gitIn(t, repo, "log", "-1", "--format=%an <%ae>%n%B", c.Snapshot); !strings.Contains(msg, "sourceosctl <sourceosctl@localhost>") || !strings.Contains(msg, "Sourceos-Session: s1") {
		t.Errorf("snapshot commit:\n%s", msg)
	}
}

func TestTheCopysGitStateNamesNoProgramAndNoCredential(t *testing.T) {
	c, _ := prepare(t, userRepo(t))
	up := c.Upper()
	head, _ := os.ReadFile(filepath.Join(up, ".git", "HEAD"))
	ref, _ := os.ReadFile(filepath.Join(up, ".git", "refs", "heads", "agent", "s1"))
	if string(head) != "ref: refs/heads/agent/s1\n" || strings.TrimSpace(string(ref)) != c.Base {
		t.Errorf("HEAD %q, branch %q", head, ref)
	}
	cfg, err := os.ReadFile(filepath.Join(up, ".git", "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"ghp_secret", "user:", "fsmonitor", "hooksPath", "credential", "extraHeader", "Bearer", "include", "alias", "ext::", "evil"} {
		if strings.Contains(strings.ToLower(string(cfg)), strings.ToLower(banned)) {
			t.Errorf("the copy's config holds %q:\n%s", banned, cfg)
		}
	}
	if !strings.Contains(string(cfg), "url = https://github.com/o/app.git") || !strings.Contains(string(cfg), "fetch = +refs/heads/*:refs/remotes/origin/*") {
		t.Errorf("the copy's config lost the remote:\n%s", cfg)
	}
	// git itself reads it: the copy's config parses, and names the agent.
	out, err := exec.Command("git", "config", "--file", filepath.Join(up, ".git", "config"), "user.email").Output()
	if err != nil || strings.TrimSpace(string(out)) != "agent@sourceos.invalid" {
		t.Errorf("git config --file: %q %v", out, err)
	}
	// One format version: git config cannot set a key named twice, so an agent's (or a
	// tool's) ordinary git config in the copy would fail.
	out, _ = exec.Command("git", "config", "--file", filepath.Join(up, ".git", "config"), "--get-all", "core.repositoryformatversion").Output()
	if strings.Count(string(out), "\n") != 1 {
		t.Errorf("core.repositoryformatversion is named %d times:\n%s", strings.Count(string(out), "\n"), cfg)
	}
}

func TestIgnoredPathsAreHiddenUnlessIncluded(t *testing.T) {
	c, _ := prepare(t, userRepo(t), "node_modules")
	for _, p := range []string{".env", "build"} {
		st, err := os.Lstat(filepath.Join(c.Upper(), p))
		if err != nil {
			t.Fatalf("%s has no whiteout: %v", p, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode()&os.ModeCharDevice == 0 || sys.Rdev != 0 {
			t.Errorf("%s: mode %v rdev %d, want a 0:0 character device", p, st.Mode(), sys.Rdev)
		}
	}
	if _, err := os.Lstat(filepath.Join(c.Upper(), "node_modules")); !os.IsNotExist(err) {
		t.Errorf("node_modules is included by the profile, but hidden: %v", err)
	}
	if strings.Join(c.Masked, ",") != ".env,build/" || strings.Join(c.Included, ",") != "node_modules/" {
		t.Errorf("masked %v, included %v", c.Masked, c.Included)
	}
}

func TestChanged(t *testing.T) {
	c, state := prepare(t, userRepo(t))
	changed := func() bool {
		t.Helper()
		got, err := c.Changed()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if changed() {
		t.Fatal("a fresh copy counts as changed")
	}
	put(t, filepath.Join(c.Upper(), ".git", "index"), "rewritten by git status")
	put(t, filepath.Join(c.Upper(), ".git", "objects", "ab", "cdef"), "an unreferenced object")
	_ = os.Remove(filepath.Join(c.Upper(), ".git", "COMMIT_EDITMSG")) // its whiteout: the overlay replaces it
	put(t, filepath.Join(c.Upper(), ".git", "COMMIT_EDITMSG"), "x")
	if changed() {
		t.Fatal("an index rewrite, a loose object or git's bookkeeping counts as a change")
	}
	put(t, filepath.Join(c.Upper(), ".git", "refs", "heads", "agent", "s1"), "0123456789012345678901234567890123456789\n")
	if !changed() {
		t.Fatal("a commit on the branch is not a change")
	}
	put(t, filepath.Join(c.Upper(), ".git", "refs", "heads", "agent", "s1"), c.Base+"\n")
	put(t, filepath.Join(c.Upper(), "src", "new.go"), "package src\n")
	if !changed() {
		t.Fatal("a new file is not a change")
	}
	loaded, err := repocopy.Load(state, "s1")
	if err != nil || loaded.Base != c.Base || len(loaded.Masked) != len(c.Masked) {
		t.Fatalf("Load = %+v, %v", loaded, err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if list, _, _ := repocopy.List(state); len(list) != 0 {
		t.Fatalf("after Remove: %v", list)
	}
}

func TestCheckBranch(t *testing.T) {
	for _, ok := range []string{"agent/x", "feature/a.b-c_d", "x"} {
		if err := repocopy.CheckBranch(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a..b", "a/", "a.lock", "a b", "a/.b", "a//b", "refs/../x", "a:b", "a~1", "a^", "a\\b",
		"HEAD", "FETCH_HEAD", "ORIG_HEAD", "refs/heads/x", "heads/x", "tags/v1", "remotes/origin/main"} {
		if repocopy.CheckBranch(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// withSubmodule is userRepo with a submodule at vendor/lib: a repository of its own, made
// in root from files, committed.
func withSubmodule(t *testing.T, files map[string]string) (repo, root, lib string) {
	t.Helper()
	root = t.TempDir()
	lib = filepath.Join(root, "lib")
	for name, body := range files {
		put(t, filepath.Join(lib, name), body)
	}
	gitIn(t, root, "init", "-q", "-b", "main", lib)
	gitIn(t, lib, "add", "-A")
	gitIn(t, lib, "commit", "-q", "-m", "lib")
	repo = userRepo(t)
	gitIn(t, repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "vendor/lib")
	gitIn(t, repo, "commit", "-q", "-m", "submodule")
	return repo, root, lib
}

// TestSubmoduleConfigurationsAreShadowed: a submodule's own configuration (under
// .git/modules) can hold a token in its remote URL and a credential helper; the copy shadows
// it with one that keeps what git needs (format, work tree, remotes without credentials).
func TestSubmoduleConfigurationsAreShadowed(t *testing.T) {
	repo, _, _ := withSubmodule(t, map[string]string{"lib.txt": "lib\n"})
	modCfg := filepath.Join(repo, ".git", "modules", "vendor", "lib", "config")
	for _, kv := range [][2]string{{"remote.origin.url", "https://user:ghp_subtoken@example.com/lib.git"}, {"credential.helper", "store"}, {"core.fsmonitor", "touch /tmp/x"}} {
		gitIn(t, repo, "config", "--file", modCfg, kv[0], kv[1])
	}
	c, _ := prepare(t, repo)
	shadow, err := os.ReadFile(filepath.Join(c.Upper(), ".git", "modules", "vendor", "lib", "config"))
	if err != nil {
		t.Fatalf("no shadow of the submodule's configuration: %v", err)
	}
	for _, banned := range []string{"ghp_subtoken", "user:", "credential", "fsmonitor"} {
		if strings.Contains(string(shadow), banned) {
			t.Errorf("the shadow holds %q:\n%s", banned, shadow)
		}
	}
	for _, want := range []string{"worktree = ../../../../vendor/lib", "url = https://example.com/lib.git"} {
		if !strings.Contains(string(shadow), want) {
			t.Errorf("the shadow lacks %q:\n%s", want, shadow)
		}
	}
	if out, err := exec.Command("git", "config", "--file", filepath.Join(c.Upper(), ".git", "modules", "vendor", "lib", "config"), "--list").CombinedOutput(); err != nil {
		t.Errorf("git cannot read the shadow: %v %s", err, out)
	}
}

// TestImportClone: a bundle of a remote's branches and tags becomes a clone in a repository
// git init made here — whose unborn HEAD already names the remote's default branch, as with
// init.defaultBranch — the default branch checked out and tracking origin, the other branches
// origin's, the tags; a filter the user's git configuration defines, named by the clone's
// .gitattributes, does not run; a bundle holding a tree with a .git entry is refused, leaving
// nothing checked out; a default branch named like an option is refused.
func TestImportClone(t *testing.T) {
	ctx := context.Background()
	// The user's configuration: a filter that leaves a mark when it runs.
	home := t.TempDir()
	mark := filepath.Join(home, "FILTER-RAN")
	put(t, filepath.Join(home, ".gitconfig"), "[filter \"evil\"]\n\tsmudge = touch "+mark+"; cat\n\tclean = cat\n")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))

	remote := t.TempDir()
	gitIn(t, remote, "init", "-q", "-b", "trunk")
	put(t, filepath.Join(remote, "README"), "hello\n")
	put(t, filepath.Join(remote, ".gitattributes"), "* filter=evil\n")
	gitIn(t, remote, "-c", "filter.evil.clean=cat", "add", "-A")
	gitIn(t, remote, "commit", "-qm", "one")
	gitIn(t, remote, "tag", "v1")
	gitIn(t, remote, "branch", "feature")
	_ = os.Remove(mark) // git add ran the clean side only, but be sure
	bundle := filepath.Join(t.TempDir(), "clone.bundle")
	gitIn(t, remote, "bundle", "create", "-q", bundle, "--branches", "--tags")

	repo := t.TempDir()
	gitIn(t, repo, "init", "-q", "-b", "trunk")
	if err := repocopy.ImportClone(ctx, gitBin(t), bundle, repo, "trunk", "https://example.com/r.git"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "README")); string(b) != "hello\n" {
		t.Errorf("README = %q", b)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("the user's filter ran on the clone's files")
	}
	for args, want := range map[string]string{
		"symbolic-ref HEAD":                       "refs/heads/trunk",
		"rev-parse --abbrev-ref trunk@{upstream}": "origin/trunk",
		"remote get-url origin":                   "https://example.com/r.git",
		"tag":                                     "v1",
		"branch -r":                               "origin/feature\n  origin/trunk",
	} {
		if got := gitIn(t, repo, strings.Fields(args)...); got != want {
			t.Errorf("git %s = %q, want %q", args, got, want)
		}
	}

	if err := repocopy.ImportClone(ctx, gitBin(t), bundle, initRepo(t), "--upload-pack=x", "u"); err == nil || !strings.Contains(err.Error(), "default branch") {
		t.Errorf("a default branch that is an option: %v", err)
	}

	// A remote whose tree holds a .git directory (a hook inside) is refused by the checks.
	evil := exec.Command("sh", "-c", `set -e
blob=$(printf '#!/bin/sh\necho pwned\n' | git hash-object -w --stdin)
hooks=$(printf '100755 blob %s\tpost-checkout\n' "$blob" | git mktree)
dotgit=$(printf '040000 tree %s\thooks\n' "$hooks" | git mktree)
root=$( (git ls-tree HEAD; printf '040000 tree %s\t.git\n' "$dotgit") | git mktree)
commit=$(git -c user.name=u -c user.email=u@example.com commit-tree -p HEAD -m evil "$root")
git update-ref refs/heads/trunk "$commit"
git bundle create -q "$1" --branches`, "sh", bundle)
	evil.Dir = remote
	if out, err := evil.CombinedOutput(); err != nil {
		t.Fatalf("making the bad bundle: %v\n%s", err, out)
	}
	repo2 := initRepo(t)
	err := repocopy.ImportClone(ctx, gitBin(t), bundle, repo2, "trunk", "https://example.com/r.git")
	if err == nil || !strings.Contains(err.Error(), "git refused the clone") {
		t.Fatalf("a tree with .git: %v", err)
	}
	if entries, _ := os.ReadDir(repo2); len(entries) != 1 {
		t.Errorf("something was checked out: %v", entries)
	}
}

func initRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q")
	return dir
}

func gitBin(t *testing.T) gitrun.Git {
	t.Helper()
	bin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is not installed")
	}
	return gitrun.Git{Binary: bin}
}

// TestTheUsersGitRecordsAreHidden: what the user's .git holds besides what git needs to work
// — reflogs (a pull's URL with its token), hooks, config.worktree, a file the config
// includes, linked worktrees' state, the last commit message, FETCH_HEAD, the stash (which
// holds ignored files with --all) — is whited out in the copy; what git needs is not; an
// untouched copy is still unchanged.
func TestTheUsersGitRecordsAreHidden(t *testing.T) {
	repo := userRepo(t)
	gitDir := filepath.Join(repo, ".git")
	put(t, filepath.Join(gitDir, "config.worktree"), "[http]\n\textraHeader = Authorization: Bearer WT\n")
	put(t, filepath.Join(gitDir, "secret.inc"), "[http]\n\textraHeader = Authorization: Bearer INC\n")
	put(t, filepath.Join(gitDir, "FETCH_HEAD"), "x\tbranch 'main' of https://u:tok@example.com/app\n")
	put(t, filepath.Join(gitDir, "hooks", "pre-commit"), "#!/bin/sh\n")
	put(t, filepath.Join(gitDir, "worktrees", "wt", "gitdir"), "/home/u/wt/.git\n")
	put(t, filepath.Join(gitDir, "info", "exclude"), "*.local\n")
	gitIn(t, repo, "stash", "--quiet", "--all")
	put(t, filepath.Join(repo, "main.go"), "package main // edited again\n")
	c, _ := prepare(t, repo)
	whiteout := func(rel string) bool {
		st, err := os.Lstat(filepath.Join(c.Upper(), rel))
		return err == nil && st.Mode()&os.ModeCharDevice != 0
	}
	for _, rel := range []string{".git/logs", ".git/hooks", ".git/config.worktree", ".git/secret.inc", ".git/FETCH_HEAD",
		".git/worktrees", ".git/COMMIT_EDITMSG", ".git/description", ".git/refs/stash"} {
		if !whiteout(rel) {
			t.Errorf("%s is not hidden in the copy", rel)
		}
	}
	for _, rel := range []string{".git/objects", ".git/refs", ".git/info", ".git/HEAD", ".git/config", ".git/index", ".git/refs/heads"} {
		if whiteout(rel) {
			t.Errorf("%s, which git needs, is hidden", rel)
		}
	}
	if changed, err := c.Changed(); err != nil || changed {
		t.Errorf("an untouched copy with its records hidden: changed %v, %v", changed, err)
	}
}

// TestImportRefusesHistoryTheSessionDidNotMake: a branch whose commit has, besides the base,
// a parent the user's repository already has (here the stash's commit of ignored files, made
// by git stash --all) is refused, and so is one whose .gitmodules names an ext:: URL; a
// branch of new commits on the base is brought in. A refusal leaves no branch.
func TestImportRefusesHistoryTheSessionDidNotMake(t *testing.T) {
	ctx := context.Background()
	repo := userRepo(t)
	put(t, filepath.Join(repo, "empty.txt"), "") // the stash holds the empty file too
	gitIn(t, repo, "stash", "--quiet", "--all")
	stashed := gitIn(t, repo, "rev-parse", "refs/stash^3") // the ignored and untracked files
	// Another branch of the user's, which the agent may merge.
	gitIn(t, repo, "checkout", "-q", "-b", "side")
	put(t, filepath.Join(repo, "side.txt"), "side\n")
	gitIn(t, repo, "add", "side.txt")
	gitIn(t, repo, "commit", "-q", "-m", "side")
	side := gitIn(t, repo, "rev-parse", "HEAD")
	gitIn(t, repo, "checkout", "-q", "main")
	put(t, filepath.Join(repo, "main.go"), "package main // edited again\n")
	git, _ := exec.LookPath("git")
	g := gitrun.Git{Binary: git}
	// The agent's side: a repository reading the user's objects, as the copy does.
	agent := filepath.Join(t.TempDir(), "agent")
	gitIn(t, filepath.Dir(agent), "init", "-q", agent)
	put(t, filepath.Join(agent, ".git", "objects", "info", "alternates"), filepath.Join(repo, ".git", "objects")+"\n")
	branch := func(c *repocopy.Copy, head string) {
		t.Helper()
		gitIn(t, agent, "update-ref", "refs/heads/"+c.Branch, head)
		if err := os.MkdirAll(c.Out(), 0o700); err != nil {
			t.Fatal(err)
		}
		gitIn(t, agent, "bundle", "create", "-q", filepath.Join(c.Out(), repocopy.BundleFile), "refs/heads/"+c.Branch, "--not", c.Base)
	}
	// withFile is a commit on base whose tree has blob at name.
	withFile := func(base, name, blob string) string {
		index := filepath.Join(t.TempDir(), "index")
		env := append(os.Environ(), "GIT_INDEX_FILE="+index)
		run := func(args ...string) string {
			cmd := exec.Command("git", append([]string{"-C", agent}, args...)...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v %s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		run("read-tree", base)
		run("update-index", "--add", "--cacheinfo", "100644,"+blob+","+name)
		return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", run("write-tree"), "-p", base, "-m", "add "+name)
	}
	withGitmodules := func(base, url string) string {
		index := filepath.Join(t.TempDir(), "index")
		env := append(os.Environ(), "GIT_INDEX_FILE="+index)
		run := func(stdin string, args ...string) string {
			cmd := exec.Command("git", append([]string{"-C", agent}, args...)...)
			cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v %s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		run("", "read-tree", base)
		blob := run("[submodule \"s\"]\n\tpath = s\n\turl = "+url+"\n", "hash-object", "-w", "--stdin")
		run("", "update-index", "--add", "--cacheinfo", "100644,"+blob+",.gitmodules")
		return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", run("", "write-tree"), "-p", base, "-m", "submodule")
	}
	for _, c := range []struct {
		name   string
		head   func(base string) string
		refuse string
	}{
		{"a merge of the stash's ignored files", func(base string) string {
			return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", base+"^{tree}", "-p", base, "-p", stashed, "-m", "merge -s ours")
		}, "already has"},
		{"reset to the stash's commit, then a commit", func(string) string {
			return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", stashed+"^{tree}", "-p", stashed, "-m", "on top")
		}, "already has"},
		{"the stash's tree as a new root commit, merged in", func(base string) string {
			root := gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", stashed+"^{tree}", "-m", "vendor snapshot")
			return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", base+"^{tree}", "-p", base, "-p", root, "-m", "merge -s ours")
		}, "no parent"},
		{"the stash's .env added, then removed", func(base string) string {
			added := withFile(base, ".env", gitIn(t, agent, "rev-parse", stashed+":.env"))
			return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", base+"^{tree}", "-p", added, "-m", "remove it again")
		}, "only your stash of untracked or ignored files has"},
		{"a .gitmodules with an ext:: URL", func(base string) string { return withGitmodules(base, "ext::sh -c touch% /tmp/x") }, "runs a program"},
		{"a .gitmodules with an ext:: URL split by a line continuation", func(base string) string { return withGitmodules(base, "e\\\nxt::sh -c touch% /tmp/x") }, "runs a program"},
		{"a .gitmodules with another remote helper", func(base string) string { return withGitmodules(base, "evil::whatever") }, "runs a program"},
		{"a .gitmodules with an https URL, and a new commit", func(base string) string { return withGitmodules(base, "https://example.com/s.git") }, ""},
		{"a merge of the user's other branch (git merge main)", func(base string) string {
			return gitIn(t, agent, "-c", "user.name=a", "-c", "user.email=a@x", "commit-tree", base+"^{tree}", "-p", base, "-p", side, "-m", "merge side")
		}, ""},
		{"an empty file, which the stash holds too", func(base string) string {
			return withFile(base, "pkg/__init__.py", gitInWith(t, agent, "", "hash-object", "-w", "--stdin")[:40])
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cp, _ := prepare(t, repo)
			head := c.head(cp.Base)
			branch(cp, head)
			_, err := cp.Import(ctx, g, repocopy.Manifest{Head: head, Commits: []string{head}})
			exists, _ := repocopy.BranchExists(ctx, g, repo, cp.Branch)
			switch {
			case c.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.refuse != "" && (err == nil || !strings.Contains(err.Error(), c.refuse)):
				t.Fatalf("err = %v, want a refusal saying %q", err, c.refuse)
			case c.refuse != "" && exists:
				t.Errorf("the refused branch %s is in the repository", cp.Branch)
			case c.refuse == "" && !exists:
				t.Errorf("the branch %s was not brought in", cp.Branch)
			}
			if exists {
				gitIn(t, repo, "branch", "-D", "-q", cp.Branch)
			}
		})
	}
}

// TestMergeRefusesToReplaceUntrackedFilesOrChangeHooks: a branch that adds a file the user
// has as an ignored file (.env) is refused, dry run or not, changing nothing; one that
// changes files below an in-tree core.hooksPath (husky 9's .husky/_ names .husky too) or a
// hook manager's configuration is refused unless AllowHooks; a symbolic link out of the
// repository is named in the plan (a link within it is not); and the merge itself runs no
// hook of the user's.
func TestMergeRefusesToReplaceUntrackedFilesOrChangeHooks(t *testing.T) {
	ctx := context.Background()
	git, _ := exec.LookPath("git")
	g := gitrun.Git{Binary: git}
	for _, c := range []struct {
		name, file, hooksPath string
		allowHooks            bool
		refuse                string
	}{
		{"an ignored .env the user has", ".env", "", false, `adds ".env"`},
		{"below the ignored build directory, where the user has out.bin", "build/out.bin", "", false, `adds "build/out.bin"`},
		{"a husky hook", ".husky/pre-commit", ".husky/_", false, "--allow-hook-changes"},
		{"a hook in an in-tree hooks directory", "githooks/post-merge", "githooks", false, "--allow-hook-changes"},
		{"the pre-commit framework's configuration", ".pre-commit-config.yaml", "", false, "--allow-hook-changes"},
		{"a husky hook, allowed", ".husky/pre-commit", ".husky/_", true, ""},
		{"a new file", "src/new.go", "", false, ""},
		{"a link out of the repository", "sshlink", "", false, ""},
		{"a file a hook of .git/hooks links to", "tools/pre-commit", "link", false, "--allow-hook-changes"},
		{"lint-staged's configuration", ".lintstagedrc.json", "", false, "--allow-hook-changes"},
		{"lint-staged's configuration in a subdirectory", "web/.lintstagedrc.json", "", false, "--allow-hook-changes"},
		{"husky's directory in other case", ".HUSKY/pre-commit", "", false, "--allow-hook-changes"},
		{"a package.json configuring husky", "package.json", "", false, "--allow-hook-changes"},
		{"the tracked link the hooks path goes through, repointed", "hooks", "symdir", false, "--allow-hook-changes"},
		{"a tracked link a hook's link goes through, repointed", "hook.sh", "chain", false, "--allow-hook-changes"},
		{"a link within it", "src/link", "", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo := userRepo(t)
			mark := filepath.Join(t.TempDir(), "HOOK-RAN")
			// The user's own post-merge hook, outside the tree: the merge must not run it either.
			hooks := filepath.Join(t.TempDir(), "hooks")
			put(t, filepath.Join(hooks, "post-merge"), "#!/bin/sh\ntouch "+mark+"\n")
			if err := os.Chmod(filepath.Join(hooks, "post-merge"), 0o755); err != nil {
				t.Fatal(err)
			}
			switch c.hooksPath {
			case "":
				gitIn(t, repo, "config", "core.hooksPath", hooks)
			case "link": // hooks of .git/hooks, the pre-commit one a link into the tree
				gitIn(t, repo, "config", "--unset", "core.hooksPath")
				put(t, filepath.Join(repo, "tools", "pre-commit"), "#!/bin/sh\n")
				gitIn(t, repo, "add", "tools/pre-commit")
				gitIn(t, repo, "commit", "-q", "-m", "hook script")
				if err := os.MkdirAll(filepath.Join(repo, ".git", "hooks"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("../../tools/pre-commit", filepath.Join(repo, ".git", "hooks", "pre-commit")); err != nil {
					t.Fatal(err)
				}
			case "symdir": // core.hooksPath = hooks, a tracked link to scripts/hooks
				put(t, filepath.Join(repo, "scripts", "hooks", "pre-commit"), "#!/bin/sh\n")
				if err := os.Symlink("scripts/hooks", filepath.Join(repo, "hooks")); err != nil {
					t.Fatal(err)
				}
				gitIn(t, repo, "add", "scripts", "hooks")
				gitIn(t, repo, "commit", "-q", "-m", "hooks")
				gitIn(t, repo, "config", "core.hooksPath", "hooks")
			case "chain": // .git/hooks/pre-commit -> ../../hook.sh, a tracked link to scripts/real.sh
				gitIn(t, repo, "config", "--unset", "core.hooksPath")
				put(t, filepath.Join(repo, "scripts", "real.sh"), "#!/bin/sh\n")
				if err := os.Symlink("scripts/real.sh", filepath.Join(repo, "hook.sh")); err != nil {
					t.Fatal(err)
				}
				gitIn(t, repo, "add", "scripts", "hook.sh")
				gitIn(t, repo, "commit", "-q", "-m", "hook")
				if err := os.MkdirAll(filepath.Join(repo, ".git", "hooks"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("../../hook.sh", filepath.Join(repo, ".git", "hooks", "pre-commit")); err != nil {
					t.Fatal(err)
				}
			default:
				gitIn(t, repo, "config", "core.hooksPath", c.hooksPath)
			}
			cp, _ := prepare(t, repo)
			gitIn(t, repo, "stash", "--quiet", "--include-untracked") // the user's uncommitted changes, out of the way
			// The session's branch: the base plus one file, made in the user's repository.
			index := filepath.Join(t.TempDir(), "index")
			mode, content := "100755", ""
			switch c.file {
			case "sshlink":
				mode, content = "120000", "/root/.ssh"
			case "src/link":
				mode, content = "120000", "../main.go"
			case "hooks":
				mode, content = "120000", "evil"
			case "hook.sh":
				mode, content = "120000", "evil.sh"
			case "package.json":
				mode, content = "100644", `{"husky": {"hooks": {"pre-commit": "node evil.js"}}}`
			}
			blob := strings.TrimSpace(gitInWith(t, repo, content, "hash-object", "-w", "--stdin"))
			env := append(os.Environ(), "GIT_INDEX_FILE="+index)
			for _, args := range [][]string{{"read-tree", cp.Base}, {"update-index", "--add", "--cacheinfo", mode + "," + blob + "," + c.file}} {
				cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v %s", args, err, out)
				}
			}
			cmd := exec.Command("git", "-C", repo, "write-tree")
			cmd.Env = env
			tree, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			head := gitIn(t, repo, "commit-tree", strings.TrimSpace(string(tree)), "-p", cp.Base, "-m", "agent")
			gitIn(t, repo, "branch", cp.Branch, head)
			cp.Result = &repocopy.Result{Changed: true, Head: head}
			before := gitIn(t, repo, "rev-parse", "HEAD")
			for _, dry := range []bool{true, false} {
				plan, err := cp.Merge(ctx, g, repocopy.MergeOptions{NoFF: true, DryRun: dry, AllowHooks: c.allowHooks}, time.Now())
				if want := c.file == "sshlink"; want != (len(plan.OutsideLinks) == 1 && plan.OutsideLinks[0] == "sshlink -> /root/.ssh") || !want && len(plan.OutsideLinks) > 0 {
					t.Errorf("dry run %v: links out of the repository %q", dry, plan.OutsideLinks)
				}
				switch {
				case c.refuse == "" && err != nil:
					t.Fatalf("dry run %v: refused: %v", dry, err)
				case c.refuse != "" && (err == nil || !strings.Contains(err.Error(), c.refuse)):
					t.Fatalf("dry run %v: err = %v, want a refusal with %q", dry, err, c.refuse)
				}
			}
			after := gitIn(t, repo, "rev-parse", "HEAD")
			if c.refuse != "" && after != before {
				t.Errorf("a refused merge moved HEAD from %s to %s", before, after)
			}
			if c.refuse == "" && after == before {
				t.Errorf("the merge did not happen")
			}
			if _, err := os.Stat(mark); err == nil {
				t.Errorf("the merge ran the user's post-merge hook")
			}
		})
	}
}

// TestRepositoriesOfTheirOwnAndSubmodulesIgnoredFilesAreHidden: git status lists a nested
// repository as an untracked directory and looks no further, and does not look inside a
// submodule for its ignored files — each would put a token or an .env in the copy. Nested
// repositories (also deeper inside an untracked directory) are hidden unless included, and
// not recorded in the snapshot; a submodule's ignored files are hidden by its own rules.
func TestRepositoriesOfTheirOwnAndSubmodulesIgnoredFilesAreHidden(t *testing.T) {
	repo, root, lib := withSubmodule(t, map[string]string{"lib.txt": "lib\n", ".gitignore": "secret.env\n"})
	put(t, filepath.Join(repo, "vendor", "lib", "secret.env"), "SUB_TOKEN=x\n")
	for _, nested := range []string{"nested", "tools/deep/inner"} {
		dir := filepath.Join(repo, filepath.FromSlash(nested))
		put(t, filepath.Join(dir, "n.txt"), "n\n")
		gitIn(t, root, "init", "-q", dir)
		gitIn(t, dir, "config", "remote.origin.url", "https://u:NESTED_TOKEN@example.com/n.git")
		if nested == "nested" { // the other has no commit: git add would fail on it
			gitIn(t, dir, "add", "-A")
			gitIn(t, dir, "commit", "-q", "-m", "n")
		}
	}
	// A submodule as an old git cloned it: its git directory inside its work tree.
	old := filepath.Join(repo, "vendor", "old")
	gitIn(t, root, "clone", "-q", lib, old)
	gitIn(t, old, "config", "remote.origin.url", "https://u:OLD_TOKEN@example.com/old.git")
	gitIn(t, repo, "config", "--file", ".gitmodules", "submodule.old.path", "vendor/old")
	gitIn(t, repo, "config", "--file", ".gitmodules", "submodule.old.url", "https://example.com/old.git")
	gitIn(t, repo, "update-index", "--add", "--cacheinfo", "160000,"+gitIn(t, old, "rev-parse", "HEAD")+",vendor/old")
	gitIn(t, repo, "add", ".gitmodules")
	gitIn(t, repo, "commit", "-q", "-m", "old submodule")
	put(t, filepath.Join(old, "secret.env"), "OLD_SUB=x\n")
	// An embedded repository: a gitlink with no .gitmodules entry (git add of a clone).
	emb := filepath.Join(repo, "emb")
	gitIn(t, root, "clone", "-q", lib, emb)
	gitIn(t, emb, "config", "remote.origin.url", "https://u:EMB_TOKEN@example.com/emb.git")
	gitIn(t, repo, "update-index", "--add", "--cacheinfo", "160000,"+gitIn(t, emb, "rev-parse", "HEAD")+",emb")
	gitIn(t, repo, "commit", "-q", "-m", "embedded")
	put(t, filepath.Join(emb, "secret.env"), "EMB=x\n")
	put(t, filepath.Join(repo, "tools", "tool.sh"), "echo tool\n")
	put(t, filepath.Join(repo, "main.go"), "package main // edited\n")
	c, _ := prepare(t, repo)
	if cfg, err := os.ReadFile(filepath.Join(c.Upper(), "vendor", "old", ".git", "config")); err != nil || strings.Contains(string(cfg), "OLD_TOKEN") || !strings.Contains(string(cfg), "example.com/old.git") {
		t.Errorf("the old-style submodule's configuration is not shadowed (%v):\n%s", err, cfg)
	}
	if st, err := os.Lstat(filepath.Join(c.Upper(), "vendor", "old", ".git", "logs")); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("the old-style submodule's reflogs are not hidden: %v", err)
	}
	if !slices.Contains(c.Masked, "vendor/old/secret.env") {
		t.Errorf("the old-style submodule's ignored file is not hidden: %v", c.Masked)
	}
	if cfg, err := os.ReadFile(filepath.Join(c.Upper(), "emb", ".git", "config")); err != nil || strings.Contains(string(cfg), "EMB_TOKEN") || !slices.Contains(c.Masked, "emb/secret.env") {
		t.Errorf("the embedded repository's configuration (%v) or ignored file is in the copy: masked %v\n%s", err, c.Masked, cfg)
	}
	for _, want := range []string{"nested/", "tools/deep/inner/", "vendor/lib/secret.env"} {
		if !slices.Contains(c.Masked, want) {
			t.Errorf("%s is not hidden: masked %v", want, c.Masked)
		}
	}
	if slices.Contains(c.Masked, "tools/") {
		t.Errorf("the untracked tools/ around a nested repository is hidden whole: %v", c.Masked)
	}
	if tree := gitIn(t, repo, "ls-tree", "-r", "--name-only", c.Base); strings.Contains(tree, "nested") || !strings.Contains(tree, "tools/tool.sh") {
		t.Errorf("the snapshot records a hidden repository, or lost tools/tool.sh:\n%s", tree)
	}
	included, _ := prepare(t, repo, "nested")
	if slices.Contains(included.Masked, "nested/") || !slices.Contains(included.Included, "nested/") {
		t.Errorf("an included nested repository: masked %v included %v", included.Masked, included.Included)
	}
}

// TestDiscardKeepsTheCopyOfASessionThatHasNotEnded: a copy with no result yet (its session
// running, or killed before its end) may hold the agent's work: discard refuses it without
// force, and removes it with force.
func TestDiscardKeepsTheCopyOfASessionThatHasNotEnded(t *testing.T) {
	c, _ := prepare(t, userRepo(t))
	git, _ := exec.LookPath("git")
	if _, err := c.Discard(context.Background(), gitrun.Git{Binary: git}, false, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("discard without --force: %v", err)
	}
	if _, err := os.Stat(c.Dir); err != nil {
		t.Fatalf("the copy is gone after a refused discard: %v", err)
	}
	if _, err := c.Discard(context.Background(), gitrun.Git{Binary: git}, true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("the copy is still there after discard --force: %v", err)
	}
}

// TestAPackedStashAndAnUndoneStageAreNotInTheCopy: a stash that git gc moved into
// packed-refs is left out of the copy's packed-refs (and an untouched copy is still
// unchanged); a change staged and then undone in the work tree leaves the snapshot's tree
// HEAD's, and the copy's index is still its own (the user's would commit the undone change).
func TestAPackedStashAndAnUndoneStageAreNotInTheCopy(t *testing.T) {
	repo := userRepo(t)
	gitIn(t, repo, "stash", "--quiet", "--include-untracked")
	gitIn(t, repo, "pack-refs", "--all")
	if _, err := os.Lstat(filepath.Join(repo, ".git", "refs", "stash")); err == nil {
		t.Fatal("the stash is still a loose ref: the test needs it packed")
	}
	put(t, filepath.Join(repo, "main.go"), "package main // staged, then undone\n")
	gitIn(t, repo, "add", "main.go")
	put(t, filepath.Join(repo, "main.go"), "package main\n")
	c, _ := prepare(t, repo)
	packed, err := os.ReadFile(filepath.Join(c.Upper(), ".git", "packed-refs"))
	if err != nil || strings.Contains(string(packed), "refs/stash") || !strings.Contains(string(packed), "refs/heads/main") {
		t.Errorf("the copy's packed-refs (%v):\n%s", err, packed)
	}
	if c.Snapshot != "" {
		t.Errorf("a snapshot %s was made of a tree equal to HEAD's", c.Snapshot)
	}
	index, err := os.ReadFile(filepath.Join(c.Upper(), ".git", "index"))
	if err != nil {
		t.Fatalf("the copy has no index of its own: %v", err)
	}
	scratch := filepath.Join(t.TempDir(), "index")
	if err := os.WriteFile(scratch, index, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-C", repo, "diff-index", "--cached", "--quiet", "HEAD")
	cmd.Env = append(os.Environ(), "GIT_INDEX_FILE="+scratch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the copy's index stages something against HEAD (%v): %s", err, out)
	}
	if changed, err := c.Changed(); err != nil || changed {
		t.Errorf("an untouched copy: changed %v, %v", changed, err)
	}
}
