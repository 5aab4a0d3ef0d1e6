package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/repowatch"
)

// awaitWatcher waits until the watcher a session of w started for its repository answers.
func awaitWatcher(t testing.TB, w *workspace) {
	t.Helper()
	dir, err := repowatch.Dir()
	if err != nil {
		t.Fatal(err)
	}
	// The sessions' environment (cliProcess).
	env := append(os.Environ(), "HOME="+w.home, "XDG_CONFIG_HOME="+filepath.Join(w.home, ".config"))
	socket := repowatch.SocketPath(dir, filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine"), w.repo, env)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := repowatch.Query(context.Background(), socket, w.repo)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(socket + ".log")
			t.Fatalf("no watcher answers for %s after 60 s: %v\nits log: %s", w.repo, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastSessionLog is the session log of w's latest bundle.
func lastSessionLog(t *testing.T, w *workspace) string {
	t.Helper()
	entries, err := os.ReadDir(w.evidenceDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "log" {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no bundle")
	}
	b, err := os.ReadFile(filepath.Join(w.evidenceDir(), slices.Max(names), "artifacts", "session.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIntegrationAWatchedRepositoryIsReadOnlyWhereItChanged runs real sessions (the built
// command, real containers): the first reads the repository in full and leaves a watcher;
// the next, after the user changed the tree, reads again only what changed — and the session
// sees exactly that: the modified tracked file and the new untracked one are in its copy
// and its starting snapshot, the new ignored .env (in a tracked directory and in a new one)
// is hidden. A changed .gitignore ends the watcher: the session after it reads in full, and
// what the new rule ignores is hidden.
func TestIntegrationAWatchedRepositoryIsReadOnlyWhereItChanged(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	w.write(t, ".gitignore", ".env\n")
	w.git(t, w.repo, "add", ".gitignore")
	w.git(t, w.repo, "commit", "--quiet", "-m", "ignore .env")
	session := func(script string) string {
		t.Helper()
		cmd := cliProcess(t, e, w.workspace, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "cd /workspace && "+script)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("session: %v\n%s\n%s", err, &out, &errOut)
		}
		return out.String()
	}
	readAs := regexp.MustCompile(`the repository read (in full|from its watcher, \d+ paths? read again)`)
	// The user edits as themselves (w.write would chown the whole tree: a change to every
	// record of the repository).
	edit := func(name, body string) {
		t.Helper()
		cmd := w.asOwner(w.repo, "sh", "-c", `mkdir -p "$(dirname "$1")" && printf %s "$2" > "$1"`, "sh", name, body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("edit %s: %v\n%s", name, err, out)
		}
	}
	read := func() string {
		t.Helper()
		log := lastSessionLog(t, w.workspace)
		m := readAs.FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("the session log does not say how the repository was read:\n%s", log)
		}
		return m[1]
	}

	session("true")
	if got := read(); got != "in full" {
		t.Fatalf("the first session read the repository %s, want in full", got)
	}
	awaitWatcher(t, w.workspace)
	session("true")
	if got := read(); got != "from its watcher, 0 paths read again" {
		t.Fatalf("an unchanged repository was read %s", got)
	}

	edit("README.md", "# app\nchanged by the user\n")
	edit("notes/new.txt", "the user's new file\n")
	edit(".env", "SECRET="+testSecretValue+"\n")
	edit("src/.env", "SECRET="+testSecretValue+"\n")
	edit("fresh/deep/.env", "SECRET="+testSecretValue+"\n")
	// The watchers' sockets are on the host only: the session cannot ask, or answer, one.
	sockets, err := repowatch.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(sockets); len(entries) == 0 {
		t.Fatalf("no watcher's socket on the host in %s: the check below would prove nothing", sockets)
	}
	out := session(`cat README.md notes/new.txt; for f in .env src/.env fresh/deep/.env ` + sockets + `; do test -e "$f" && echo "SAW $f"; done; ls -d /tmp/sourceosctl-* 2>/dev/null && echo "SAW sockets"; git status --porcelain; git show --stat --format=%s HEAD`)
	if got := read(); !strings.HasPrefix(got, "from its watcher") || strings.HasSuffix(got, " 0 paths read again") {
		t.Errorf("after the user's changes the repository was read %s", got)
	}
	for _, want := range []string{"changed by the user", "the user's new file", "README.md", "notes/new.txt", "uncommitted changes at the start"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside: want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SAW") || strings.Contains(out, ".env") {
		t.Errorf("an ignored .env made after the watcher started is in the copy:\n%s", out)
	}

	edit(".gitignore", ".env\n*.txt\n")
	out = session(`find . -name '*.txt' -not -path './.git/*'; echo END`)
	if got := read(); got != "in full" {
		t.Errorf("after a change to the ignore rules the repository was read %s, want in full", got)
	}
	if strings.Contains(out, "new.txt") {
		t.Errorf("a file the changed rules ignore is in the copy:\n%s", out)
	}
}

// TestIntegrationARepositoryPathTheOverlayCannotMountIsRefused: a repository whose path holds
// a ',' or ':' (the overlay's option separators) is refused before anything is made, dry run
// or not, with the fix — it failed at the container's start, with runc's message, the copy
// already made.
func TestIntegrationARepositoryPathTheOverlayCannotMountIsRefused(t *testing.T) {
	e := podmantest.Need(t)
	w := newGitWorkspace(t, e, "").committed(t)
	for _, name := range []string{"a,b", "a:b"} {
		parent := filepath.Join(w.home, "mine")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		w.own(t, parent)
		repo := filepath.Join(parent, name)
		w.git(t, parent, "clone", "--quiet", w.repo, repo)
		cli := w.cli(t, e)
		for _, dry := range []bool{true, false} {
			args := []string{"--profile", w.profile, "am", "shell", "--repo", repo}
			if dry {
				args = append(args, "--dry-run")
			}
			code, out, errOut := cli(append(args, "--", "sh", "-c", "echo TOOL-RAN")...)
			if code != ExitUsage || !strings.Contains(errOut, "cannot mount") || !strings.Contains(errOut, "--direct") || strings.Contains(out, "TOOL-RAN") {
				t.Errorf("%s (dry run %v): exit %d, want %d and the fix:\n%s%s", name, dry, code, ExitUsage, out, errOut)
			}
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "copies")); len(entries) != 0 {
		t.Errorf("a refused session made a copy: %v", entries)
	}
}
