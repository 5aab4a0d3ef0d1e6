package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// A git repository for copy-mode sessions: the workspace's repository made a real one, owned
// (when the suite runs as root) by uid 1000 as a developer's would be, with an origin to
// fetch from, ignored secrets and build output, and uncommitted changes of the user's.
type gitWorkspace struct {
	*workspace
	origin    string
	ownerHome string // the owner's HOME when they run git (the workspace's home is sourceosctl's)
	uid, gid  int
}

const userUncommitted = "a line the user has not committed"

func newGitWorkspace(t *testing.T, e *podmantest.Env, extraSpec string) *gitWorkspace {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed on the host for copy-mode sessions:", err)
	}
	w := &gitWorkspace{workspace: newWorkspace(t, e, extraSpec), uid: os.Getuid(), gid: os.Getgid()}
	if w.uid == 0 {
		w.uid, w.gid = 1000, 1000
	}
	w.ownerHome = filepath.Join(w.home, "owner")
	if err := os.Mkdir(w.ownerHome, 0o755); err != nil {
		t.Fatal(err)
	}
	w.own(t, w.ownerHome)
	w.initRepo(t)
	return w
}

// committed is the workspace with the user's uncommitted changes committed: a clean start.
func (w *gitWorkspace) committed(t *testing.T) *gitWorkspace {
	t.Helper()
	w.git(t, w.repo, "add", "-A")
	w.git(t, w.repo, "commit", "--quiet", "-m", "user's work")
	return w
}

// cli runs sourceosctl with args against the harness's service, as the workspace's user:
// the exit code, standard output and standard error.
func (w *gitWorkspace) cli(t *testing.T, e *podmantest.Env) func(args ...string) (int, string, string) {
	return func(args ...string) (int, string, string) {
		t.Helper()
		f, out, errOut := sessionFactory(t, e, w.workspace, nil)
		code := run(t, f, args...)
		return code, out.String(), errOut.String()
	}
}

// initRepo makes the workspace's repository, as its owner.
func (w *gitWorkspace) initRepo(t *testing.T) {
	t.Helper()
	w.origin = filepath.Join(w.home, "origin.git")
	files := map[string]string{
		"README.md":                  "# app\nline one\n",
		"src/main.go":                "package main\n\nfunc main() {}\n",
		"data.txt":                   "data\n",
		"config.json":                "{}\n",
		".gitignore":                 ".env\nbuild/\nnode_modules/\n",
		".env":                       "SECRET=" + testSecretValue + "\n",
		"build/out.bin":              "built\n",
		"node_modules/lib/index.js":  "module.exports = 1\n",
		"docs/guide.md":              "guide\n",
		"src/internal/deep/deep.txt": "deep\n",
	}
	for name, body := range files {
		w.write(t, name, body)
	}
	w.git(t, w.repo, "init", "--quiet", "--initial-branch=main")
	w.git(t, w.repo, "config", "user.name", "Developer")
	w.git(t, w.repo, "config", "user.email", "dev@example.com")
	w.git(t, w.repo, "add", "-A")
	w.git(t, w.repo, "commit", "--quiet", "-m", "initial")
	if err := os.Mkdir(w.origin, 0o755); err != nil {
		t.Fatal(err)
	}
	w.own(t, w.origin)
	w.git(t, w.origin, "init", "--quiet", "--bare")
	w.git(t, w.repo, "remote", "add", "origin", w.origin)
	w.git(t, w.repo, "push", "--quiet", "origin", "main")
	w.write(t, "README.md", "# app\nline one\n"+userUncommitted+"\n")
	w.write(t, "notes.txt", "untracked notes\n")
}

// write writes a file in the repository as its owner would have.
func (w *gitWorkspace) write(t *testing.T, name, body string) {
	t.Helper()
	p := filepath.Join(w.repo, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	w.own(t, w.repo)
}

func (w *gitWorkspace) own(t *testing.T, root string) {
	t.Helper()
	if os.Getuid() == 0 {
		chownTree(t, root, w.uid, w.gid)
	}
}

// asOwner is a command run in dir as the repository's owner, as they would run it: their
// uid, their environment (HOME is theirs), nothing of sourceosctl's in between.
func (w *gitWorkspace) asOwner(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + w.ownerHome, "LANG=C", "GIT_TERMINAL_PROMPT=0"}
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.uid), Gid: uint32(w.gid)}}
	}
	return cmd
}

// git runs git as the owner and fails the test if it fails.
func (w *gitWorkspace) git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := w.asOwner(dir, "git", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s%s", strings.Join(args, " "), dir, err, out, &stderr)
	}
	return strings.TrimRight(string(out), "\n")
}

// repoState is what a session must never change in the user's repository: its
// configuration, hooks, work tree status, HEAD and every ref but the session's branch.
type repoState struct {
	config, hooks, status, head, refs string
}

func (w *gitWorkspace) state(t *testing.T, except string) repoState {
	t.Helper()
	config, err := os.ReadFile(filepath.Join(w.repo, ".git", "config"))
	if err != nil {
		t.Fatal(err)
	}
	hooks, _ := os.ReadDir(filepath.Join(w.repo, ".git", "hooks"))
	var names []string
	for _, h := range hooks {
		names = append(names, h.Name())
	}
	var refs []string
	for _, r := range strings.Split(w.git(t, w.repo, "for-each-ref", "--format=%(refname) %(objectname)"), "\n") {
		if except == "" || !strings.HasPrefix(r, "refs/heads/"+except+" ") {
			refs = append(refs, r)
		}
	}
	return repoState{config: string(config), hooks: strings.Join(names, ","),
		status: w.git(t, w.repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
		head:   w.git(t, w.repo, "rev-parse", "HEAD"), refs: strings.Join(refs, "\n")}
}

// sessionRow reads the one session the CLI lists for the repository.
func (w *gitWorkspace) sessions(t *testing.T, e *podmantest.Env) []sessionRow {
	t.Helper()
	f, out, errOut := sessionFactory(t, e, w.workspace, nil)
	if code := run(t, f, "am", "sessions", "--repo", w.repo, "-o", "json"); code != 0 {
		t.Fatalf("sessions: exit %d: %s", code, errOut)
	}
	var rows []sessionRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("sessions -o json: %v\n%s", err, out)
	}
	return rows
}

// escapeKit holds, on the host, a program for every way we know a repository's contents
// can name one to run — each leaves a mark in fired/ when it runs — and the shell script
// that plants all of them in a repository from inside it (as an agent in a session would,
// in its copy). The same script planted by the owner in a throwaway clone (the control)
// shows the kit is live: there the marks appear.
type escapeKit struct{ dir string }

// gitHooks are every hook git (2.39) knows, and the p4 ones git-p4 runs.
var gitHooks = []string{"applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit",
	"pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase",
	"post-checkout", "post-merge", "pre-push", "pre-receive", "update", "proc-receive",
	"post-receive", "post-update", "reference-transaction", "push-to-checkout", "pre-auto-gc",
	"post-rewrite", "sendemail-validate", "fsmonitor-watchman", "post-index-change",
	"p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit"}

// escapeConfig are configuration keys whose values git runs (or that change what it runs),
// each pointing at the kit's program of the same name.
var escapeConfig = [][2]string{
	{"core.fsmonitor", "bin/fsmonitor"},
	{"core.sshCommand", "bin/sshCommand"},
	{"core.gitProxy", "bin/gitProxy"},
	{"core.pager", "bin/pager"},
	{"core.editor", "bin/editor"},
	{"core.askPass", "bin/askPass"},
	{"core.alternateRefsCommand", "bin/alternateRefsCommand"},
	{"sequence.editor", "bin/sequenceEditor"},
	{"pager.status", "bin/pagerStatus"},
	{"pager.log", "bin/pagerLog"},
	{"diff.external", "bin/diffExternal"},
	{"diff.tool", "evil"},
	{"difftool.evil.cmd", "bin/difftool"},
	{"merge.tool", "evil"},
	{"mergetool.evil.cmd", "bin/mergetool"},
	{"filter.evilc.clean", "bin/filterClean"},
	{"filter.evilc.smudge", "bin/filterSmudge"},
	{"filter.evilp.process", "bin/filterProcess"},
	{"diff.evil.textconv", "bin/textconv"},
	{"diff.evil.command", "bin/diffDriver"},
	{"merge.evil.driver", "bin/mergeDriver"},
	{"credential.helper", "bin/credentialHelper"},
	{"gpg.program", "bin/gpgProgram"},
	{"gpg.ssh.program", "bin/gpgSshProgram"},
	{"commit.gpgSign", "true"},
	{"tag.gpgSign", "true"},
	{"log.showSignature", "true"},
	{"protocol.ext.allow", "always"},
	{"protocol.allow", "always"},
	{"remote.origin.uploadpack", "bin/uploadpack"},
	{"remote.origin.receivepack", "bin/receivepack"},
	{"uploadpack.packObjectsHook", "bin/packObjectsHook"},
	{"trailer.evil.command", "bin/trailerCommand"},
	{"trailer.evil.ifMissing", "add"},
	{"submodule.evil.update", "!bin/submoduleUpdate"},
	{"gc.auto", "1"},
	{"gc.autoDetach", "false"},
	{"include.path", "include"},
	{`includeIf.gitdir:/.path`, "include-if"},
	{"extensions.worktreeConfig", "true"},
	{"core.repositoryFormatVersion", "1"},
}

func newEscapeKit(t *testing.T, w *gitWorkspace, dir string) *escapeKit {
	t.Helper()
	k := &escapeKit{dir: dir}
	for _, d := range []string{"bin", "hooks", "fired", "worktree"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"fired", "worktree"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	// Each program leaves its mark and then behaves: filters and textconv pass the content
	// through, so the repository keeps working and later mechanisms get their turn.
	program := func(path, mark string) {
		body := fmt.Sprintf("#!/bin/sh\n: > %s/fired/%s\n", dir, mark)
		switch {
		case strings.Contains(mark, "Filter") || mark == "filterClean" || mark == "filterSmudge":
			body += "exec cat\n"
		case mark == "textconv":
			body += "exec cat \"$1\"\n"
		case strings.Contains(strings.ToLower(mark), "fsmonitor"):
			body += "exit 1\n" // a failed monitor: git scans the tree itself
		}
		body += "exit 0\n"
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range escapeConfig {
		if v := strings.TrimPrefix(kv[1], "!"); strings.HasPrefix(v, "bin/") {
			program(filepath.Join(dir, v), strings.TrimPrefix(v, "bin/"))
		}
	}
	for _, name := range []string{"extRemote", "insteadOf", "includeFilter", "includeIfFilter", "worktreeConfigFilter", "gitmodulesUpdate"} {
		program(filepath.Join(dir, "bin", name), name)
	}
	for _, h := range gitHooks {
		program(filepath.Join(dir, "hooks", h), "hooksPath-"+h)
	}
	// A repository of the kit's, for a .git file to point at: its settings run the kit too.
	fake := filepath.Join(dir, "fakerepo", ".git")
	if out, err := exec.Command("git", "init", "--quiet", filepath.Dir(fake)).CombinedOutput(); err != nil {
		t.Fatalf("git init %s: %v %s", fake, err, out)
	}
	program(filepath.Join(dir, "bin", "fakegitFsmonitor"), "fakegitFsmonitor")
	if out, err := exec.Command("git", "config", "--file", filepath.Join(fake, "config"), "core.fsmonitor", filepath.Join(dir, "bin", "fakegitFsmonitor")).CombinedOutput(); err != nil {
		t.Fatalf("git config: %v %s", err, out)
	}
	for _, h := range gitHooks {
		program(filepath.Join(fake, "hooks", h), "fakegit-"+h)
	}
	for name, body := range map[string]string{
		"include":    fmt.Sprintf("[filter \"incl\"]\n\tclean = %s/bin/includeFilter\n", dir),
		"include-if": fmt.Sprintf("[filter \"incif\"]\n\tclean = %s/bin/includeIfFilter\n", dir),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.own(t, dir) // the owner's git would refuse a repository of root's (safe.directory)
	return k
}

// plant is the script that plants everything in the repository at the working directory:
// configuration, hooks in .git/hooks, the worktree configuration, attributes naming the
// drivers, a .gitmodules naming a command, remotes through ext::, and a nested repository
// with its own hooks. It ends by printing PLANTED.
func (k *escapeKit) plant(origin string) string {
	var b strings.Builder
	// git config runs outside the repository: what is planted must not stop the planting.
	b.WriteString("set -e\nK=" + k.dir + "\nR=$PWD\ncfg() { (cd / && git config --file \"$R/.git/config\" \"$@\"); }\n")
	for _, kv := range escapeConfig {
		v := kv[1]
		switch {
		case strings.HasPrefix(v, "!"):
			v = "!$K/" + v[1:]
		case strings.HasPrefix(v, "bin/") || v == "hooks" || v == "worktree" || strings.HasPrefix(v, "include"):
			v = "$K/" + v
		}
		fmt.Fprintf(&b, "cfg '%s' \"%s\"\n", kv[0], v)
	}
	b.WriteString(`cfg remote.origin.url "ext::$K/bin/extRemote %S"
cfg url."ext::$K/bin/insteadOf %S #".insteadOf "` + origin + `"
(cd / && git config --file "$R/.git/config.worktree" filter.wt.clean "$K/bin/worktreeConfigFilter")
mkdir -p .git/hooks
for h in ` + strings.Join(gitHooks, " ") + `; do
	printf '#!/bin/sh\n: > %s/fired/hook-%s\n' "$K" "$h" > ".git/hooks/$h"
	chmod 0755 ".git/hooks/$h"
done
printf '*.md filter=evilc diff=evil merge=evil\n*.go diff\nsrc/internal/** filter=evilp\n*.txt filter=incl diff=evil merge=evil\n*.json filter=incif\ndocs/** filter=wt\n' > .gitattributes
printf '[submodule "evil"]\n\tpath = evilsub\n\turl = ./evilsub\n\tbranch = main\n' > .gitmodules
mkdir -p nested && (cd nested && git init -q && echo n > n.txt && git add n.txt && git -c user.name=a -c user.email=a@example.com commit -qm n && mkdir -p .git/hooks && git config core.fsmonitor "$K/bin/fsmonitor" && printf '#!/bin/sh\n: > %s/fired/nested-hook\n' "$K" > .git/hooks/post-checkout && chmod 0755 .git/hooks/post-checkout)
echo PLANTED
`)
	return b.String()
}

// fired lists the marks the kit's programs left.
func (k *escapeKit) fired(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(k.dir, "fired"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// ordinaryGit is what a developer does in their repository in a day, each command as
// they would type it: look, switch branches, fetch and pull, and (with edits) edit, commit
// and push. Failures are kept (a planted setting may make a command fail) but do not stop
// the rest.
func (w *gitWorkspace) ordinaryGit(t *testing.T, dir string, edits bool) string {
	t.Helper()
	var log strings.Builder
	step := func(name string, args ...string) {
		out, err := w.asOwner(dir, name, args...).CombinedOutput()
		fmt.Fprintf(&log, "$ %s %s (%v)\n%s", name, strings.Join(args, " "), err, out)
	}
	step("git", "rev-parse", "--show-toplevel")
	step("git", "status")
	step("git", "log", "-1")
	step("git", "diff")
	step("git", "checkout", "--quiet", "-b", "look")
	step("git", "checkout", "--quiet", "main")
	step("git", "fetch", "origin")
	step("git", "pull", "--no-rebase", "--no-edit", "origin", "main")
	if !edits {
		return log.String()
	}
	step("sh", "-c", "for f in README.md src/main.go data.txt config.json notes.txt docs/guide.md; do echo edit >> $f; done")
	step("git", "diff")
	step("git", "add", "-A")
	step("git", "diff", "--cached", "--stat")
	step("git", "commit", "--quiet", "-m", "user's work", "--trailer", "evil: x")
	step("git", "log", "-p", "-2")
	step("git", "checkout", "--quiet", "-b", "side")
	step("sh", "-c", "echo side >> data.txt && git commit --quiet -am side")
	step("git", "checkout", "--quiet", "main")
	step("git", "merge", "--no-edit", "--quiet", "side")
	step("git", "fetch", "origin")
	step("git", "pull", "--no-rebase", "--no-edit", "origin", "main")
	step("git", "push", "--quiet", "origin", "main")
	step("sh", "-c", "echo edit >> src/internal/deep/deep.txt")
	step("git", "status")
	step("git", "diff")
	step("git", "submodule", "update", "--init")
	return log.String()
}

// TestIntegrationNothingTheAgentWritesRunsOnTheHost is the repository escape, class by
// class: from inside a copy-mode session the agent commits, leaves work uncommitted and then
// plants every mechanism the kit knows in its repository. None may fire — not while
// sourceosctl collects the work, not under the user's ordinary git commands afterwards, not
// after the user merges the agent's branch. The control plants the same in a clone and runs
// the same commands there, so the kit is shown to be live.
func TestIntegrationNothingTheAgentWritesRunsOnTheHost(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "")
	kit := newEscapeKit(t, w, filepath.Join(w.home, "kit"))
	before := w.state(t, "")

	t.Run("control: planted in the user's own repository, the kit fires", func(t *testing.T) {
		control := newEscapeKit(t, w, filepath.Join(w.home, "control-kit"))
		clone := filepath.Join(w.home, "control")
		if out, err := exec.Command("cp", "-a", w.repo, clone).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		w.own(t, clone)
		if out, err := w.asOwner(clone, "sh", "-c", control.plant(w.origin)).CombinedOutput(); err != nil || !strings.Contains(string(out), "PLANTED") {
			t.Fatalf("plant in the control: %v\n%s", err, out)
		}
		log := w.ordinaryGit(t, clone, true)
		fired := control.fired(t)
		// Not every planted mechanism fires here (a filter process needs git's protocol
		// spoken back; git itself refuses a .gitmodules update command), so the control
		// names those the commands do reach.
		t.Logf("the control's git fired %d: %v", len(fired), fired)
		for _, want := range []string{"fsmonitor", "hook-pre-commit", "hook-post-checkout", "hook-reference-transaction", "diffExternal", "gpgProgram", "extRemote", "filterClean", "includeFilter", "includeIfFilter", "worktreeConfigFilter"} {
			if !slices.ContainsFunc(fired, func(f string) bool { return strings.HasPrefix(f, want) }) {
				t.Errorf("the control did not fire %s: the kit or the commands no longer exercise it\n%s", want, log)
			}
		}
	})

	f, out, errOut := sessionFactory(t, e, w.workspace, nil)
	script := `cd /workspace
test -e .env && echo "SAW .env"
test -e build/out.bin && echo "SAW build"
test -e node_modules && echo "SAW node_modules"
grep -q "` + userUncommitted + `" README.md && echo "SAW the user's uncommitted line"
test -e notes.txt && echo "SAW the untracked notes"
echo "branch=$(git branch --show-current)"
touch .git/probe && echo ".git writable in the copy"
echo "agent work" > agent.txt && git add agent.txt && git commit -q -m "agent: add agent.txt" && echo COMMITTED
echo "left for sourceosctl to commit" > leftover.txt && echo "agent line" >> README.md
` + kit.plant(w.origin)
	code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("session: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"SAW the user's uncommitted line", "SAW the untracked notes", "branch=agent/", ".git writable in the copy", "COMMITTED", "PLANTED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inside the copy: want %q in:\n%s", want, out)
		}
	}
	for _, leak := range []string{"SAW .env", "SAW build", "SAW node_modules"} {
		if strings.Contains(out.String(), leak) {
			t.Errorf("an ignored path crossed into the copy: %s", leak)
		}
	}
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("ending the session ran what the agent planted: %v", fired)
	}
	rows := w.sessions(t, e)
	if len(rows) != 1 || rows[0].State != "to review" || rows[0].Commits != 2 {
		t.Fatalf("sessions: %+v", rows)
	}
	row := rows[0]
	if after := w.state(t, row.Branch); after != before {
		t.Errorf("the user's repository changed beyond the session's branch:\nbefore %+v\nafter  %+v", before, after)
	}
	// The branch: the user's snapshot, the agent's commit and the leftovers, each with the trailer.
	msgs := w.git(t, w.repo, "log", "--format=%(trailers:key=Sourceos-Session,valueonly)", "main.."+row.Branch)
	if f := strings.Fields(msgs); len(f) != 3 || strings.Count(msgs, row.Session) != 3 {
		t.Errorf("want the snapshot, the agent's commit and the leftovers each with the trailer naming %s, got:\n%s", row.Session, msgs)
	}
	tree := w.git(t, w.repo, "ls-tree", "-r", "--name-only", row.Branch)
	for _, want := range []string{"agent.txt", "leftover.txt", "notes.txt", ".gitattributes", ".gitmodules"} {
		if !slices.Contains(strings.Split(tree, "\n"), want) {
			t.Errorf("the branch lacks %s:\n%s", want, tree)
		}
	}
	for _, never := range []string{".env", "build/out.bin", "nested/n.txt", "nested"} {
		if slices.Contains(strings.Split(tree, "\n"), never) {
			t.Errorf("the branch holds %s", never)
		}
	}
	readme := w.git(t, w.repo, "show", row.Branch+":README.md")
	if !strings.Contains(readme, userUncommitted) || !strings.Contains(readme, "agent line") {
		t.Errorf("README.md on the branch:\n%s", readme)
	}
	// The evidence: base, every commit, and the patch equal to git diff base..branch.
	p := lastPredicate(t, w.workspace)
	ws := p.Git.Workspace
	if ws == nil || ws.Mode != "copy" || ws.Result == nil || ws.Branch != row.Branch {
		t.Fatalf("evidence workspace: %+v", ws)
	}
	if !strings.Contains(p.Git.After.Absent, "own copy") || p.Git.Before.Commit == "" {
		t.Errorf("git before %+v, after %+v: want the state before, and after not read again (the session could not write it)", p.Git.Before, p.Git.After)
	}
	head := w.git(t, w.repo, "rev-parse", row.Branch)
	commits := strings.Fields(w.git(t, w.repo, "rev-list", ws.Base+".."+row.Branch))
	slices.Sort(commits)
	recorded := slices.Clone(ws.Result.Commits)
	slices.Sort(recorded)
	if ws.Result.Head != head || !slices.Equal(commits, recorded) {
		t.Errorf("evidence: head %s commits %v; the branch: %s %v", ws.Result.Head, ws.Result.Commits, head, commits)
	}
	patch, err := os.ReadFile(filepath.Join(newestBundle(t, w.workspace), "artifacts", "branch.patch"))
	if err != nil {
		t.Fatal(err)
	}
	diff, err := w.asOwner(w.repo, "git", "diff", "--binary", ws.Base, row.Branch).Output()
	if err != nil || !bytes.Equal(patch, diff) {
		t.Errorf("branch.patch differs from git diff base..branch (%v):\n%s\n---\n%s", err, patch, diff)
	}

	log := w.ordinaryGit(t, w.repo, false)
	if fired := kit.fired(t); len(fired) > 0 || kit.movedWorkTree(log) {
		t.Fatalf("the user's ordinary git ran or used what the agent planted: %v\n%s", fired, log)
	}
	// The branch starts from the user's uncommitted changes: they stash them to merge (the
	// branch holds them), as the merge's refusal tells them to.
	f, out, errOut = sessionFactory(t, e, w.workspace, nil)
	if code := run(t, f, "am", "merge", row.Session, "--no-ff"); code != 1 || !strings.Contains(errOut.String(), "git stash") {
		t.Errorf("merge over the uncommitted changes the session started from: exit %d, want 1 telling to stash\n%s", code, errOut)
	}
	w.git(t, w.repo, "stash", "--quiet", "--include-untracked")
	f, out, errOut = sessionFactory(t, e, w.workspace, nil)
	if code := run(t, f, "am", "merge", row.Session, "--no-ff"); code != 0 {
		t.Fatalf("merge: exit %d\n%s\n%s", code, out, errOut)
	}
	w.git(t, w.repo, "stash", "drop", "--quiet")
	if _, err := os.Stat(filepath.Join(w.repo, ".gitattributes")); err != nil {
		t.Fatalf("the merge did not bring the agent's files: %v", err)
	}
	log = w.ordinaryGit(t, w.repo, true)
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("after the merge, the user's ordinary git ran what the agent planted: %v\n%s", fired, log)
	}
}

// newestBundle is the newest evidence bundle's directory.
func newestBundle(t *testing.T, w *workspace) string {
	t.Helper()
	bundles, err := evidence.List(w.evidenceDir()) // newest first
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no evidence in %s: %v", w.evidenceDir(), err)
	}
	return bundles[0]
}

// TestIntegrationTheAgentCannotRedirectTheUsersGit plants, each in a session of its own, what
// changes where git looks rather than what it runs: the hooks directory and the work tree
// moved to the kit, and the copy's .git replaced by a file pointing at a repository of the
// kit's, or removed. Each session ends with its work brought back (the agent's files; its
// commits went with its .git); nothing fires, then or under the user's ordinary git, and the user's
// repository is as it was apart from the session's branch. Where a plant can be shown live,
// its control plants it in a clone and expects the kit to fire.
func TestIntegrationTheAgentCannotRedirectTheUsersGit(t *testing.T) {
	e := podmantest.Need(t)
	variants := []struct {
		name    string
		plant   string // run in the repository; K is the kit
		control []string
	}{
		{"core.hooksPath and core.worktree point at the kit",
			`(cd / && git config --file "$R/.git/config" core.hooksPath "$K/hooks" && git config --file "$R/.git/config" core.worktree "$K/worktree")`,
			[]string{"hooksPath-pre-commit", "core.worktree"}},
		{"core.hooksPath alone",
			`(cd / && git config --file "$R/.git/config" core.hooksPath "$K/hooks")`,
			[]string{"hooksPath-pre-commit", "hooksPath-post-checkout", "hooksPath-reference-transaction"}},
		{".git replaced by a file pointing at the kit's repository",
			`rm -rf .git && echo "gitdir: $K/fakerepo/.git" > .git`,
			[]string{"fakegitFsmonitor"}},
		{".git removed", `rm -rf .git`, nil},
		{".git made a symlink to the kit's repository", `rm -rf .git && ln -s "$K/fakerepo/.git" .git`, []string{"fakegitFsmonitor"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			w := newGitWorkspace(t, e, "")
			kit := newEscapeKit(t, w, filepath.Join(w.home, "kit"))
			plant := "set -e\nK=" + kit.dir + "\nR=$PWD\necho work > agent-work.txt\n" + v.plant + "\necho PLANTED\n"
			if v.control != nil {
				control := newEscapeKit(t, w, filepath.Join(w.home, "control-kit"))
				clone := filepath.Join(w.home, "control")
				if out, err := exec.Command("cp", "-a", w.repo, clone).CombinedOutput(); err != nil {
					t.Fatalf("cp: %v %s", err, out)
				}
				w.own(t, clone)
				cplant := strings.Replace(plant, "K="+kit.dir, "K="+control.dir, 1)
				if out, err := w.asOwner(clone, "sh", "-c", cplant).CombinedOutput(); err != nil || !strings.Contains(string(out), "PLANTED") {
					t.Fatalf("plant in the control: %v\n%s", err, out)
				}
				log := w.ordinaryGit(t, clone, true)
				fired := control.fired(t)
				if strings.Contains(log, "\n"+control.dir+"/worktree\n") {
					fired = append(fired, "core.worktree")
				}
				for _, want := range v.control {
					if !slices.ContainsFunc(fired, func(f string) bool { return strings.HasPrefix(f, want) }) {
						t.Errorf("the control did not fire %s (fired %v)\n%s", want, fired, log)
					}
				}
			}
			before := w.state(t, "")
			f, out, errOut := sessionFactory(t, e, w.workspace, nil)
			code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "cd /workspace && "+plant)
			t.Logf("session: exit %d\n%s\n%s", code, out, errOut)
			if !strings.Contains(out.String(), "PLANTED") {
				t.Fatalf("the plant did not run in the session")
			}
			if fired := kit.fired(t); len(fired) > 0 {
				t.Fatalf("ending the session ran what the agent planted: %v", fired)
			}
			rows := w.sessions(t, e)
			if len(rows) != 1 {
				t.Fatalf("sessions: %+v", rows)
			}
			// The agent's commits went with its .git; its files still come back.
			if code != 0 || rows[0].State != "to review" {
				t.Errorf("session exit %d, state %q: want 0 and the work brought back", code, rows[0].State)
			} else if tree := w.git(t, w.repo, "ls-tree", "-r", "--name-only", rows[0].Branch); !slices.Contains(strings.Split(tree, "\n"), "agent-work.txt") {
				t.Errorf("the branch lacks the agent's file:\n%s", tree)
			}
			if after := w.state(t, rows[0].Branch); after != before {
				t.Errorf("the user's repository changed beyond the session's branch:\nbefore %+v\nafter  %+v", before, after)
			}
			log := w.ordinaryGit(t, w.repo, true)
			if fired := kit.fired(t); len(fired) > 0 || kit.movedWorkTree(log) {
				t.Fatalf("the user's ordinary git ran or used what the agent planted: %v\n%s", fired, log)
			}
		})
	}
}

// TestIntegrationReviewAndMergeBack is the workflow after sessions: two sessions at once on
// one repository get their own copies and branches; sessions lists them; merge --dry-run
// changes nothing; a fast-forward, a squash, a conflict refused with nothing changed, and
// discard removing the copy and the branch but never the evidence.
func TestIntegrationReviewAndMergeBack(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t) // a clean start: the user commits what they had
	cli := w.cli(t, e)
	session := func(script string) (int, string, string) {
		return cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "cd /workspace && "+script)
	}

	// Concurrent sessions.
	type result struct {
		code        int
		out, errOut string
	}
	results := make(chan result, 2)
	for _, s := range []string{
		`echo one > one.txt && git add one.txt && git commit -qm "agent one" && echo "branch=$(git branch --show-current)"`,
		`echo two > two.txt && echo "branch=$(git branch --show-current)"`,
	} {
		go func() {
			code, out, errOut := session(s)
			results <- result{code, out, errOut}
		}()
	}
	branches := map[string]bool{}
	for range 2 {
		r := <-results
		if r.code != 0 {
			t.Fatalf("concurrent session: exit %d\n%s\n%s", r.code, r.out, r.errOut)
		}
		branches[strings.TrimSpace(strings.TrimPrefix(r.out, "branch="))] = true
	}
	rows := w.sessions(t, e)
	if len(rows) != 2 || len(branches) != 2 || rows[0].Copy == rows[1].Copy {
		t.Fatalf("two concurrent sessions: branches %v, sessions %+v", branches, rows)
	}
	var one, two sessionRow
	for _, r := range rows {
		if !branches[r.Branch] || r.State != "to review" {
			t.Errorf("session %+v: not one of the branches the sessions saw (%v), or not to review", r, branches)
		}
		switch w.git(t, w.repo, "ls-tree", "--name-only", r.Branch, "one.txt", "two.txt") {
		case "one.txt":
			one = r
		case "two.txt":
			two = r
		}
	}
	if one.Session == "" || two.Session == "" {
		t.Fatalf("each branch should hold its own session's file only: %+v", rows)
	}

	code, out, errOut := cli("am", "sessions")
	if code != 0 || !strings.Contains(out, "SESSION") || !strings.Contains(out, one.Branch) || !strings.Contains(out, two.Branch) || !strings.Contains(out, "to review") {
		t.Errorf("sessions (table): exit %d\n%s%s", code, out, errOut)
	}
	head := w.git(t, w.repo, "rev-parse", "HEAD")
	code, out, errOut = cli("am", "merge", one.Session, "--dry-run")
	if code != 0 || !strings.Contains(out, "fast-forward") || w.git(t, w.repo, "rev-parse", "HEAD") != head {
		t.Fatalf("merge --dry-run: exit %d, HEAD moved or no plan:\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = cli("am", "diff", one.Session)
	if code != 0 || !strings.Contains(out, "+one") {
		t.Errorf("diff: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = cli("am", "merge", one.Session); code != 0 {
		t.Fatalf("merge: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := w.git(t, w.repo, "rev-parse", "HEAD"); got != w.git(t, w.repo, "rev-parse", one.Branch) {
		t.Errorf("a fast-forward should leave HEAD at the branch")
	}
	if code, out, errOut = cli("am", "merge", two.Session, "--squash"); code != 0 {
		t.Fatalf("merge --squash: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := w.git(t, w.repo, "rev-list", "--count", "--no-merges", one.Branch+"..HEAD"); n != "1" {
		t.Errorf("a squash should add one commit, added %s", n)
	}
	if msg := w.git(t, w.repo, "log", "-1", "--format=%(trailers:key=Sourceos-Session,valueonly)"); msg != two.Session {
		t.Errorf("the squash commit's trailer: %q", msg)
	}
	for _, r := range w.sessions(t, e) {
		if r.State != "merged" {
			t.Errorf("after merging: %+v", r)
		}
	}

	// A conflict: the session and the user change the same line.
	code, out, errOut = session(`sed -i 's/line one/line one, the agent/' README.md`)
	if code != 0 {
		t.Fatalf("session: %d\n%s", code, errOut)
	}
	w.write(t, "README.md", "# app\nline one, the user\n")
	w.git(t, w.repo, "commit", "--quiet", "-am", "user's line")
	var three sessionRow
	for _, r := range w.sessions(t, e) {
		if r.State == "to review" {
			three = r
		}
	}
	before := w.state(t, "")
	for _, args := range [][]string{{"--dry-run"}, nil, {"--squash"}, {"--no-ff"}} {
		code, out, errOut = cli(append([]string{"am", "merge", three.Session}, args...)...)
		if code != 1 || !strings.Contains(errOut, "conflicts with your branch in README.md") || !strings.Contains(errOut, "nothing was changed") {
			t.Errorf("merge %v over a conflict: exit %d, want 1 naming README.md:\n%s%s", args, code, out, errOut)
		}
	}
	if after := w.state(t, ""); after != before {
		t.Errorf("a refused merge changed the repository:\nbefore %+v\nafter  %+v", before, after)
	}

	// Discard: the copy and the branch go, the evidence stays.
	evidenceDir := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
	bundlesBefore, _ := os.ReadDir(evidenceDir)
	if code, out, errOut = cli("am", "discard", three.Session, "--dry-run"); code != 0 || w.git(t, w.repo, "branch", "--list", three.Branch) == "" {
		t.Errorf("discard --dry-run: exit %d or the branch went:\n%s%s", code, out, errOut)
	}
	if code, out, errOut = cli("am", "discard", three.Session); code != 0 {
		t.Fatalf("discard: exit %d\n%s%s", code, out, errOut)
	}
	if b := w.git(t, w.repo, "branch", "--list", three.Branch); b != "" {
		t.Errorf("the branch is still there: %s", b)
	}
	if _, err := os.Stat(three.Copy); !os.IsNotExist(err) {
		t.Errorf("the copy is still there: %v", err)
	}
	if bundlesAfter, _ := os.ReadDir(evidenceDir); len(bundlesAfter) != len(bundlesBefore) {
		t.Errorf("discard touched the evidence: %d bundles, was %d", len(bundlesAfter), len(bundlesBefore))
	}
	if code, _, errOut = cli("am", "diff", three.Session); code != ExitUsage && code != 1 || !strings.Contains(errOut, "sessions") {
		t.Errorf("diff of a discarded session: exit %d\n%s", code, errOut)
	}
}

// TestIntegrationDirectModeAndThePlan: the dry run says where the copy goes and its branch;
// --direct mounts the live work tree with .git read-only; profile-included ignored paths
// cross into the copy; a branch name already taken is refused before anything starts.
func TestIntegrationDirectModeAndThePlan(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "  workspace:\n    include: [node_modules]\n")
	cli := w.cli(t, e)
	code, out, errOut := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--branch", "agent/feature-x", "--dry-run")
	copies := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "copies")
	if code != 0 || !strings.Contains(out, "agent/feature-x") || !strings.Contains(out, copies) || !strings.Contains(out, "node_modules") {
		t.Errorf("dry run: exit %d, want the branch, the copy under %s and the included path:\n%s%s", code, copies, out, errOut)
	}
	if entries, _ := os.ReadDir(copies); len(entries) != 0 {
		t.Errorf("the dry run made a copy: %v", entries)
	}

	code, out, errOut = cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--branch", "agent/feature-x", "--",
		"sh", "-c", "cd /workspace && test -e node_modules/lib/index.js && echo INCLUDED; test -e .env || echo NO-ENV; echo x > feature.txt")
	if code != 0 || !strings.Contains(out, "INCLUDED") || !strings.Contains(out, "NO-ENV") {
		t.Fatalf("session with --branch: exit %d\n%s%s", code, out, errOut)
	}
	if w.git(t, w.repo, "branch", "--list", "agent/feature-x") == "" {
		t.Fatalf("no branch agent/feature-x")
	}
	for _, dry := range []bool{true, false} {
		args := []string{"--profile", w.profile, "am", "shell", "--repo", w.repo, "--branch", "agent/feature-x"}
		if dry {
			args = append(args, "--dry-run")
		}
		code, out, errOut = cli(append(args, "--", "sh", "-c", "echo TOOL-RAN")...)
		if code != ExitUsage || !strings.Contains(errOut, "agent/feature-x") || strings.Contains(out, "TOOL-RAN") {
			t.Errorf("a taken branch name (dry run %v): exit %d, want %d naming it:\n%s%s", dry, code, ExitUsage, out, errOut)
		}
	}

	code, out, errOut = cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--direct", "--dry-run")
	if code != 0 || !strings.Contains(out, "direct") || !strings.Contains(out, ".git") {
		t.Errorf("direct dry run: exit %d, want the mode and .git read-only said:\n%s%s", code, out, errOut)
	}
	before := w.state(t, "")
	code, out, errOut = cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--direct", "--",
		"sh", "-c", "cd /workspace && echo live > live.txt && echo WROTE; touch .git/x 2>/dev/null || echo GIT-READ-ONLY; git config core.fsmonitor /bin/false 2>/dev/null || echo CONFIG-READ-ONLY")
	if code != 0 || !strings.Contains(out, "WROTE") || !strings.Contains(out, "GIT-READ-ONLY") || !strings.Contains(out, "CONFIG-READ-ONLY") {
		t.Errorf("direct session: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(w.repo, "live.txt")); err != nil {
		t.Errorf("direct mode did not write the live tree: %v", err)
	}
	after := w.state(t, "")
	if after.config != before.config || after.hooks != before.hooks || after.refs != before.refs || after.head != before.head {
		t.Errorf("direct mode changed .git")
	}
	directSeesNoSubmount(t, e, w.workspace, cli)
}

// directSeesNoSubmount mounts a file system inside the repository (a tmpfs holding a
// secret): a direct session binds the repository without it (the mount policy and the
// hard-link check never walk another file system), and so does the dry run's podman line.
func directSeesNoSubmount(t *testing.T, e *podmantest.Env, w *workspace, cli func(...string) (int, string, string)) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the suite as root: mounting inside the repository needs it")
		}
		t.Log("not root: the file system mounted inside the repository is not tried")
		return
	}
	mnt := filepath.Join(w.repo, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("none", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := "test -e /workspace/mnt/secret && echo SUBMOUNT-SEEN || echo NO-SUBMOUNT"
	code, out, errOut := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--direct", "--", "sh", "-c", probe)
	if code != 0 || !strings.Contains(out, "NO-SUBMOUNT") {
		t.Errorf("direct session with a file system mounted inside the repository: exit %d\n%s%s", code, out, errOut)
	}
	code, line, errOut := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--direct", "--dry-run", "-o", "podman", "--", "sh", "-c", probe)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, errOut)
	}
	cmd := exec.Command("sh", "-c", strings.TrimSpace(line))
	cmd.Env = append(os.Environ(), e.ConfEnv...)
	raw, err := cmd.CombinedOutput()
	if !strings.Contains(string(raw), "NO-SUBMOUNT") {
		t.Errorf("the dry run's podman line carries the mounted file system in: %v\n%s\n%s", err, raw, line)
	}
}

// movedWorkTree reports whether the commands' log shows git using the kit's directory as
// the work tree (core.worktree planted and honoured).
func (k *escapeKit) movedWorkTree(log string) bool {
	return strings.Contains(log, "\n"+k.dir+"/worktree\n")
}

// TestIntegrationForgedObjectsAreRefusedByTheFetch: the agent commits, with git's plumbing,
// what git would refuse to make itself — a tree holding .git/hooks/post-checkout, a
// .gitmodules naming a command for "git submodule update". The collector brings its commits
// as they are (it rewrites only their messages), and the user's repository receives them over
// git's pack protocol with every object checked: the branch is refused, naming git's check,
// the copy is kept, nothing fires and the user's repository is as it was.
func TestIntegrationForgedObjectsAreRefusedByTheFetch(t *testing.T) {
	e := podmantest.Need(t)
	for _, tc := range []struct{ name, forge, check string }{
		{"a tree holding .git", `blob=$(printf '#!/bin/sh\n: > %s/fired/dotgit-hook\n' "$K" | git hash-object -w --stdin)
hooks=$(printf '100755 blob %s\tpost-checkout\n' "$blob" | git mktree)
dotgit=$(printf '040000 tree %s\thooks\n' "$hooks" | git mktree)
root=$( (git ls-tree HEAD; printf '040000 tree %s\t.git\n' "$dotgit") | git mktree)
commit=$(git commit-tree "$root" -p HEAD -m "a tree holding .git")
git update-ref "refs/heads/$(git branch --show-current)" "$commit"`, "hasDotgit"},
		{".gitmodules naming a command", `printf '[submodule "evil"]\n\tpath = evilsub\n\turl = ./evilsub\n\tupdate = !%s/bin/gitmodulesUpdate\n' "$K" > .gitmodules
git add .gitmodules && git commit -q -m "a submodule update command"`, "gitmodulesUpdate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newGitWorkspace(t, e, "")
			kit := newEscapeKit(t, w, filepath.Join(w.home, "kit"))
			before := w.state(t, "")
			script := "set -e; cd /workspace; K=" + kit.dir + "\n" + tc.forge + "\necho FORGED"
			f, out, errOut := sessionFactory(t, e, w.workspace, nil)
			code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script)
			if !strings.Contains(out.String(), "FORGED") {
				t.Fatalf("the forged commit was not made: exit %d\n%s\n%s", code, out, errOut)
			}
			if code != 1 || !strings.Contains(errOut.String(), "git refused the session's branch") || !strings.Contains(errOut.String(), tc.check) {
				t.Errorf("want exit 1, the branch refused naming %s and the copy kept, got %d:\n%s", tc.check, code, errOut)
			}
			rows := w.sessions(t, e)
			if len(rows) != 1 || rows[0].State != "not collected" {
				t.Fatalf("sessions: %+v", rows)
			}
			if _, err := os.Stat(rows[0].Copy); err != nil {
				t.Errorf("the copy is gone: %v", err)
			}
			if after := w.state(t, ""); after != before {
				t.Errorf("the user's repository changed:\nbefore %+v\nafter  %+v", before, after)
			}
			log := w.ordinaryGit(t, w.repo, true)
			if fired := kit.fired(t); len(fired) > 0 {
				t.Fatalf("the forged objects ran: %v\n%s", fired, log)
			}
			if ws := lastPredicate(t, w.workspace).Git.Workspace; ws == nil || !strings.Contains(ws.Error, tc.check) {
				t.Errorf("evidence workspace: %+v", ws)
			}
		})
	}
}

// TestIntegrationUnreadableLeftoversDoNotLoseTheWork: an agent that takes away its own read
// permission on what it leaves (a directory, a new file, a file the branch had) no longer makes
// the whole collection fail: the rest of its work reaches the branch, and what could not be
// read is named (a committed file keeps its committed version).
func TestIntegrationUnreadableLeftoversDoNotLoseTheWork(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	if err := os.WriteFile(filepath.Join(w.repo, "kept.txt"), []byte("committed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, w.repo, 1000, 1000)
	w.git(t, w.repo, "add", "kept.txt")
	w.git(t, w.repo, "commit", "--quiet", "-m", "kept.txt")
	f, out, errOut := sessionFactory(t, e, w.workspace, nil)
	script := `cd /workspace && echo work > work.txt && mkdir cache && echo x > cache/f && chmod 000 cache &&
echo secret > new.txt && chmod 000 new.txt && echo changed > kept.txt && chmod 000 kept.txt && echo LEFT`
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script); code != 0 || !strings.Contains(out.String(), "LEFT") {
		t.Fatalf("session: exit %d\n%s\n%s", code, out, errOut)
	}
	rows := w.sessions(t, e)
	if len(rows) != 1 || rows[0].State != "to review" {
		t.Fatalf("the work was not brought back: %+v\n%s", rows, errOut)
	}
	tree := w.git(t, w.repo, "ls-tree", "-r", "--name-only", rows[0].Branch)
	if !strings.Contains(tree, "work.txt") || strings.Contains(tree, "cache/") || strings.Contains(tree, "new.txt") {
		t.Errorf("the branch's files:\n%s", tree)
	}
	if got := w.git(t, w.repo, "show", rows[0].Branch+":kept.txt"); got != "committed" {
		t.Errorf("an unreadable committed file became %q on the branch", got)
	}
	for _, want := range []string{"not brought back", "cache/ (unreadable", "new.txt (unreadable", "kept.txt (unreadable: the agent took away its own read permission); the branch keeps its committed version"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
}

// TestIntegrationTheCopyKeepsTheUsersRecordsAndTreeSafe is what a probe of the copy found,
// each tried from inside a real session: the user's own git records (reflogs, hooks,
// config.worktree, a file the config includes, the stash of ignored files, the last commit
// message) are not readable in the copy; a branch that merges in a commit the user already
// has (the stash's ignored files, by id: the object store stays readable) is not brought
// back; file names the agent chose cannot drive the terminal; and merge refuses to replace
// the user's ignored .env with the agent's, and — until allowed — to change what the user's
// hooks run (husky), and then runs none of them.
func TestIntegrationTheCopyKeepsTheUsersRecordsAndTreeSafe(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	for name, body := range map[string]string{
		"config.worktree":   "[http]\n\textraHeader = Authorization: Bearer WORKTREE-TOKEN\n",
		"secret.inc":        "[http]\n\textraHeader = Authorization: Bearer INCLUDED-TOKEN\n",
		"hooks/pre-commit":  "#!/bin/sh\n# the user's hook\n",
		"COMMIT_EDITMSG":    "the user's message\n",
		"info/attributes":   "", // kept: git needs it
		"logs/refs/tok.log": "x https://user:REFLOG-TOKEN@example.com\n",
	} {
		w.write(t, filepath.Join(".git", name), body)
	}
	w.git(t, w.repo, "config", "include.path", "secret.inc")
	w.git(t, w.repo, "config", "core.hooksPath", ".husky/_")
	w.write(t, ".env.local", "STASHED="+testSecretValue+"\n")
	w.write(t, ".gitignore", ".env\nbuild/\nnode_modules/\n.env.local\n")
	w.git(t, w.repo, "commit", "--quiet", "-am", "ignore .env.local")
	w.git(t, w.repo, "stash", "--quiet", "--all") // .env.local (and .env …) into the stash
	stashed := w.git(t, w.repo, "rev-parse", "refs/stash^3")
	w.write(t, ".env", "SECRET=the user's own\n") // back, as the user would have it
	cli := w.cli(t, e)
	session := func(script string) (int, string, string) {
		return cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "cd /workspace && "+script)
	}

	// The stash's commit merged in by id: readable (objects are), but not brought back.
	code, out, errOut := session(`for f in .git/logs .git/hooks .git/config.worktree .git/secret.inc .git/refs/stash .git/COMMIT_EDITMSG; do test -e "$f" && echo "SAW $f"; done
test -e .git/info/attributes && echo "KEPT info"
git stash list | grep -q . && echo "SAW the stash"
git cat-file -p ` + stashed + `:.env.local | grep -q STASHED && echo "READ the stash by id"
echo fix > fix.txt && git add fix.txt && git commit -qm fix && git merge -q -s ours --allow-unrelated-histories -m m ` + stashed + ` && echo MERGED`)
	for _, want := range []string{"KEPT info", "READ the stash by id", "MERGED"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside: want %q in:\n%s\n%s", want, out, errOut)
		}
	}
	if strings.Contains(out, "SAW") {
		t.Errorf("the user's git records are readable in the copy:\n%s", out)
	}
	if !strings.Contains(errOut, "already has") || !strings.Contains(errOut, stashed[:12]) {
		t.Errorf("a branch carrying the stash's commit: exit %d, want the refusal naming %s:\n%s", code, stashed[:12], errOut)
	}
	rows := w.sessions(t, e)
	if len(rows) != 1 || rows[0].State != "not collected" {
		t.Fatalf("the refused session: %+v", rows)
	}
	if exists := w.git(t, w.repo, "branch", "--list", rows[0].Branch); exists != "" {
		t.Errorf("the refused branch %s is in the repository", rows[0].Branch)
	}
	if code, _, errOut := cli("am", "discard", rows[0].Session); code != 0 {
		t.Fatalf("discard: exit %d %s", code, errOut)
	}

	// An .env of the agent's, a husky hook, a FIFO whose name is an escape sequence.
	mark := filepath.Join(w.home, "kit-fired")
	code, out, errOut = session(`echo AGENT=1 > .env && git add -f .env && mkdir -p .husky/_ && printf '#!/bin/sh\n: > ` + mark + `\n' > .husky/post-merge && printf '#!/bin/sh\n. "$(dirname "$0")/../post-merge"\n' > .husky/_/post-merge && chmod +x .husky/post-merge .husky/_/post-merge && git add .husky && git commit -qm agent && mkfifo "$(printf 'ff\033]0;OWNED\007\033[2J')" && echo DONE`)
	if code != 0 || !strings.Contains(out, "DONE") {
		t.Fatalf("session: exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "\x1b]0;OWNED") || !strings.Contains(errOut, `ff\x1b]0;OWNED\x07\x1b[2J`) {
		t.Errorf("the FIFO's name reached the terminal unescaped, or is not named:\n%q", errOut)
	}
	rows = w.sessions(t, e)
	var s sessionRow
	for _, r := range rows {
		if r.State == "to review" {
			s = r
		}
	}
	if s.Session == "" {
		t.Fatalf("no session to review: %+v", rows)
	}
	head := w.git(t, w.repo, "rev-parse", "HEAD")
	for _, dry := range []string{"--dry-run", ""} {
		args := []string{"am", "merge", s.Session}
		if dry != "" {
			args = append(args, dry)
		}
		if code, out, errOut := cli(args...); code == 0 || !strings.Contains(errOut, `adds ".env"`) {
			t.Errorf("merge %s over the user's ignored .env: exit %d\n%s%s", dry, code, out, errOut)
		}
	}
	env, _ := os.ReadFile(filepath.Join(w.repo, ".env"))
	if string(env) != "SECRET=the user's own\n" || w.git(t, w.repo, "rev-parse", "HEAD") != head {
		t.Fatalf("a refused merge changed the user's .env (%q) or HEAD", env)
	}
	if err := os.Rename(filepath.Join(w.repo, ".env"), filepath.Join(w.home, "env.aside")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli("am", "merge", s.Session); code == 0 || !strings.Contains(errOut, "--allow-hook-changes") || !strings.Contains(errOut, ".husky/post-merge") {
		t.Errorf("merge of a branch changing the husky hooks: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cli("am", "merge", s.Session, "--no-ff", "--allow-hook-changes"); code != 0 {
		t.Fatalf("merge --allow-hook-changes: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(w.repo, ".husky", "post-merge")); err != nil {
		t.Fatalf("the merge did not bring the hooks: %v", err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("sourceosctl's merge ran the agent's husky hook")
	}
}

// TestIntegrationALargeFileComesBack: a session limited to 256 MiB whose agent leaves a
// 90 MiB file (under the collector's 100 MiB per file) gets it back on its branch — the
// collector, which holds new files in memory while it writes the bundle, runs with at least
// 1 GiB (it was killed, exit 137, with every commit of the session kept back).
func TestIntegrationALargeFileComesBack(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	f, out, errOut := sessionFactory(t, e, w.workspace, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c",
		"cd /workspace && echo one > one.txt && git add one.txt && git commit -qm one && head -c 94371840 /dev/urandom > big.bin && echo WROTE"); code != 0 || !strings.Contains(out.String(), "WROTE") {
		t.Fatalf("session: exit %d\n%s\n%s", code, out, errOut)
	}
	rows := w.sessions(t, e)
	if len(rows) != 1 || rows[0].State != "to review" {
		t.Fatalf("sessions: %+v\n%s", rows, errOut)
	}
	if size := w.git(t, w.repo, "cat-file", "-s", rows[0].Branch+":big.bin"); size != "94371840" {
		t.Errorf("big.bin on the branch is %s bytes", size)
	}
}

// TestIntegrationDirectModeKeepsGitMetadataOutOfReach is what a probe of direct mode found,
// tried again from inside real sessions: a bare repository is never a workspace (its hooks
// run on the user's next push); a linked worktree's .git file is read-only (rewritten, it sent
// the user's git to the agent's configuration); a .git the session makes at the top of a
// directory that had none — a subdirectory of a repository, a directory that is not one — is
// moved aside, so the user's git there runs nothing it names; a repository mounted writable
// by the profile has its .git read-only, and a bare one is refused.
func TestIntegrationDirectModeKeepsGitMetadataOutOfReach(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	kit := newEscapeKit(t, w, filepath.Join(w.home, "kit"))
	fsmonitor := filepath.Join(kit.dir, "bin", "fsmonitor")
	cli := w.cli(t, e)
	session := func(repo, script string, extra ...string) (int, string, string) {
		args := append([]string{"--profile", w.profile, "am", "shell", "--repo", repo}, extra...)
		return cli(append(args, "--", "sh", "-c", "cd /workspace && "+script)...)
	}
	// mkdir makes an empty directory of the owner's under the (root's) home.
	mkdir := func(name string) string {
		d := filepath.Join(w.home, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		w.own(t, d)
		return d
	}

	// A bare repository: refused, dry run or not, before anything runs.
	bare := mkdir("bare.git")
	w.git(t, bare, "clone", "--quiet", "--bare", w.repo, bare)
	for _, dry := range []string{"--dry-run", "--direct"} {
		if code, out, errOut := session(bare, "echo TOOL-RAN", dry); code != ExitUsage || strings.Contains(out, "TOOL-RAN") || !strings.Contains(errOut, "is a git directory") {
			t.Errorf("a bare repository (%s): exit %d, want %d\n%s%s", dry, code, ExitUsage, out, errOut)
		}
	}

	// A linked worktree: its .git file cannot be rewritten.
	wt := mkdir("wt")
	w.git(t, w.repo, "worktree", "add", "--quiet", "-b", "wt", wt)
	dotGit, _ := os.ReadFile(filepath.Join(wt, ".git"))
	code, out, errOut := session(wt, `mkdir -p evil && git init -q evil && git -C evil config core.fsmonitor `+fsmonitor+` && { printf 'gitdir: evil/.git\n' > .git && echo REWROTE || echo GITFILE-READ-ONLY; }; echo w > w.txt`)
	if code != 0 || !strings.Contains(out, "GITFILE-READ-ONLY") {
		t.Errorf("linked worktree: exit %d\n%s%s", code, out, errOut)
	}
	if now, _ := os.ReadFile(filepath.Join(wt, ".git")); !bytes.Equal(now, dotGit) {
		t.Errorf("the worktree's .git file changed to %q", now)
	}

	// A subdirectory of the repository, and a directory that is not a repository: the .git
	// the session makes there is moved aside.
	sub := filepath.Join(w.repo, "docs")
	plain := mkdir("plain")
	for _, dir := range []string{sub, plain} {
		code, out, errOut := session(dir, `git init -q . && git config core.fsmonitor `+fsmonitor+` && echo PLANTED`)
		if code != 0 || !strings.Contains(out, "PLANTED") || !strings.Contains(errOut, "moved aside") {
			t.Errorf("%s: exit %d, want the session's .git moved aside\n%s%s", dir, code, out, errOut)
		}
		if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
			t.Errorf("%s/.git made by the session is still there", dir)
		}
		w.ordinaryGit(t, dir, false)
	}
	// Deeper: a .git two levels down, a bare repository's layout at the top, and the name it
	// would be moved to taken first (the session knows its id): each is moved aside.
	deep := mkdir("deep")
	code, out, errOut = session(deep, `mkdir -p sub/deep && git init -q sub/deep && git -C sub/deep config core.fsmonitor `+fsmonitor+` &&
mkdir objects refs && echo "ref: refs/heads/main" > HEAD && printf '[core]\n\tbare = true\n\tpager = `+fsmonitor+`\n' > config &&
mkdir -p "sub/deep/.git.from-session-$SOURCEOS_AGENT_SESSION" && echo PLANTED`)
	if code != 0 || !strings.Contains(out, "PLANTED") || strings.Count(errOut, "moved aside") != 2 {
		t.Errorf("deeper plants: exit %d, want two moved aside\n%s%s", code, out, errOut)
	}
	for _, gone := range []string{"sub/deep/.git", "HEAD"} {
		if _, err := os.Lstat(filepath.Join(deep, gone)); err == nil {
			t.Errorf("%s made by the session is still there", gone)
		}
	}
	w.ordinaryGit(t, deep, false)
	w.ordinaryGit(t, filepath.Join(deep, "sub", "deep"), false)
	w.ordinaryGit(t, wt, false)
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("the user's git ran what a direct session planted: %v", fired)
	}

	// A submodule's .git file in a direct session is read-only too: rewritten, it sent the
	// user's top-level git status into a repository of the agent's.
	lib := mkdir("lib")
	w.git(t, lib, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(lib, "lib.txt"), []byte("lib\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.own(t, lib)
	w.git(t, lib, "add", "-A")
	w.git(t, lib, "-c", "user.name=a", "-c", "user.email=a@x", "commit", "--quiet", "-m", "lib")
	w.git(t, w.repo, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", lib, "vendor/lib")
	w.git(t, w.repo, "commit", "--quiet", "-m", "submodule")
	code, out, errOut = session(w.repo, `mkdir -p /tmp/evil && git init -q /tmp/evil && { printf 'gitdir: /tmp/evil/.git\n' > vendor/lib/.git && echo REWROTE || echo SUBMODULE-GITFILE-READ-ONLY; }`, "--direct")
	if code != 0 || !strings.Contains(out, "SUBMODULE-GITFILE-READ-ONLY") {
		t.Errorf("a submodule's .git file in a direct session: exit %d\n%s%s", code, out, errOut)
	}
	// A work tree whose .git is a symbolic link: refused (what it points to cannot be
	// mounted read-only in its place).
	symrepo := mkdir("symrepo")
	if err := os.Symlink(filepath.Join(w.repo, ".git"), filepath.Join(symrepo, ".git")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := session(symrepo, "echo TOOL-RAN", "--direct"); code != ExitUsage || strings.Contains(out, "TOOL-RAN") || !strings.Contains(errOut, "symbolic link") {
		t.Errorf("a .git that is a symbolic link: exit %d, want %d\n%s%s", code, ExitUsage, out, errOut)
	}

	// The profile's own writable mounts: another repository's .git is read-only there, also
	// below a mounted parent directory; a bare repository, or a directory inside a .git, is
	// refused.
	other := mkdir("other")
	w.git(t, other, "clone", "--quiet", w.repo, other)
	code2 := mkdir("code")
	proj := filepath.Join(code2, "proj")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	w.own(t, code2)
	w.git(t, proj, "clone", "--quiet", w.repo, proj)
	// A repository nested in another (an ignored vendor/ clone) is read-only too, and so is a
	// bare repository below the mount (its hooks run on a push into it).
	nestedRepo := filepath.Join(proj, "vendor", "x")
	bareBelow := filepath.Join(code2, "shared.git")
	for _, d := range []string{nestedRepo, bareBelow} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.own(t, code2)
	w.git(t, nestedRepo, "init", "--quiet")
	w.git(t, bareBelow, "init", "--quiet", "--bare")
	for _, c := range []struct {
		source, probe string
		code          int
		says          string
	}{
		{other, "/extra/.git/config", 0, "OTHER-GIT-READ-ONLY"},
		{code2, "/extra/proj/.git/config", 0, "OTHER-GIT-READ-ONLY"},
		{code2, "/extra/proj/vendor/x/.git/config", 0, "OTHER-GIT-READ-ONLY"},
		{code2, "/extra/shared.git/hooks/post-receive", 0, "OTHER-GIT-READ-ONLY"},
		{bare, "/extra/config", ExitUsage, "is a git directory"},
		{filepath.Join(other, ".git", "hooks"), "/extra/x", ExitUsage, "is a git directory"},
	} {
		mw := newWorkspace(t, e, "  mounts:\n    - source: "+c.source+"\n      target: /extra\n")
		f, out, errOut := sessionFactory(t, e, mw, nil)
		code := run(t, f, "--profile", mw.profile, "am", "shell", "--repo", mw.repo, "--", "sh", "-c",
			"touch "+c.probe+" 2>/dev/null && echo OTHER-GIT-WRITABLE || echo OTHER-GIT-READ-ONLY")
		if code != c.code || !strings.Contains(out.String()+errOut.String(), c.says) || strings.Contains(out.String(), "WRITABLE") {
			t.Errorf("a profile mount of %s: exit %d, want %d saying %q\n%s%s", c.source, code, c.code, c.says, out, errOut)
		}
	}
	// Renaming the directory above a read-only .git puts a repository of the session's in
	// its place: moved aside afterwards, and the user told where theirs went.
	mw := newWorkspace(t, e, "  mounts:\n    - source: "+code2+"\n      target: /extra\n")
	sf, sout, serr := sessionFactory(t, e, mw, nil)
	if code := run(t, sf, "--profile", mw.profile, "am", "shell", "--repo", mw.repo, "--", "sh", "-c",
		"cd /extra && mv proj proj.old && mkdir proj && git init -q proj && git -C proj config core.fsmonitor "+fsmonitor+" && echo SWAPPED"); code != 0 || !strings.Contains(sout.String(), "SWAPPED") ||
		!strings.Contains(serr.String(), "moved aside") || !strings.Contains(serr.String(), "proj.old/.git (the session moved a directory above it)") {
		t.Errorf("a repository swapped under a writable mount: exit %d\n%s%s", code, sout, serr)
	}
	w.ordinaryGit(t, proj, false)
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("the user's git ran what a session planted under a writable mount: %v", fired)
	}
}
