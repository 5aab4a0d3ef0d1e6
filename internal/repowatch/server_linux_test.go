package repowatch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/repowatch"
)

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=u", "-c", "user.email=u@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func put(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// repository is a committed repository with tracked directories, ignore rules for whole
// directories (build/, node_modules/) and for files (*.log, .env), an ignored build output,
// an untracked directory and a directory holding only ignored files. HOME is a directory
// of the test's (git's user configuration).
func repository(t *testing.T) (repo string, git gitrun.Git) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	repo = filepath.Join(t.TempDir(), "app")
	for i := range 6 {
		put(t, filepath.Join(repo, fmt.Sprintf("src/m%d/f.go", i)), "package m\n")
		put(t, filepath.Join(repo, fmt.Sprintf("src/m%d/deep/g.go", i)), "package deep\n")
	}
	put(t, filepath.Join(repo, "README"), "app\n")
	put(t, filepath.Join(repo, ".gitignore"), "build/\nnode_modules/\n*.log\n.env\n")
	gitIn(t, filepath.Dir(repo), "init", "-q", "-b", "main", repo)
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "commit", "-q", "-m", "base")
	put(t, filepath.Join(repo, "build/out/a.o"), "o")
	put(t, filepath.Join(repo, "notes/todo.txt"), "todo")
	put(t, filepath.Join(repo, "logs/x.log"), "log")
	path, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	return repo, gitrun.Git{Binary: path}
}

// serve starts a watcher of repo and waits until it answers; the returned channel gives
// Run's result.
func serve(t *testing.T, repo string, git gitrun.Git, tune func(*repowatch.Server)) (string, <-chan error) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "w.sock")
	s := &repowatch.Server{Repo: repo, Socket: socket, Git: git}
	if tune != nil {
		tune(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended, finished := make(chan error, 1), make(chan struct{})
	go func() {
		ended <- s.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := repowatch.Query(context.Background(), socket, repo); err == nil {
			return socket, ended
		} else if !errors.Is(err, repowatch.ErrNoWatcher) {
			t.Fatalf("the watcher's first answer: %v", err)
		}
		select {
		case err := <-ended:
			t.Fatalf("the watcher ended before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not answer in 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sorted is entries in one order (git's and Merge's differ for directories).
func sorted(entries []repocopy.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Kind+" "+e.XY+" "+e.Path+" "+e.Orig)
	}
	slices.Sort(out)
	return out
}

// TestTheWatchersScanIsWhatGitSays changes a watched repository at random — files created,
// rewritten, removed and made executable, ignored files and whole ignored directories made,
// new directories (deep ones, empty ones, ones holding only ignored files), repositories of
// their own — and after every few changes compares the watcher's answer, which read again
// only the paths changed, with git's full status of the same tree: the entries (hence the
// ignored paths the copy hides, the untracked directories and whether the tree is dirty)
// must be the same.
func TestTheWatchersScanIsWhatGitSays(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { compareAtRandom(t, seed) })
	}
}

func compareAtRandom(t *testing.T, seed uint64) {
	repo, git := repository(t)
	socket, ended := serve(t, repo, git, nil)
	rng := rand.New(rand.NewPCG(seed, 2))
	dirs := []string{"", "src/m0", "src/m1/deep", "notes", "logs", "fresh", "fresh/a/b", "src/m2/new", "only-ignored"}
	names := []string{"x.txt", ".env", "y.log", "z.go", "f.go", "g.go"}
	ops := []string{"write", "write", "write", "remove", "chmod", "mkdir", "nested-repo", "ignored-dir", "rename", "remove-dir"}
	var readAgain int
	for round := range 150 {
		var did []string
		for range 1 + rng.IntN(4) {
			op := ops[rng.IntN(len(ops))]
			dir := dirs[rng.IntN(len(dirs))]
			p := filepath.Join(repo, filepath.FromSlash(dir), names[rng.IntN(len(names))])
			if dir == "only-ignored" {
				p = filepath.Join(repo, dir, fmt.Sprintf("%d.log", rng.IntN(3)))
			}
			switch op {
			case "write":
				put(t, p, fmt.Sprintf("round %d\n", round))
			case "remove":
				_ = os.Remove(p)
			case "chmod":
				_ = os.Chmod(p, 0o755)
			case "rename":
				_ = os.Rename(p, filepath.Join(repo, filepath.FromSlash(dirs[rng.IntN(len(dirs))]), names[rng.IntN(len(names))]))
			case "remove-dir":
				_ = os.RemoveAll(filepath.Join(repo, filepath.FromSlash(dir), fmt.Sprintf("empty%d", rng.IntN(3))))
				_ = os.RemoveAll(filepath.Join(repo, "fresh", "a"))
			case "mkdir":
				_ = os.MkdirAll(filepath.Join(repo, filepath.FromSlash(dir), fmt.Sprintf("empty%d", rng.IntN(3))), 0o755)
			case "nested-repo":
				nested := filepath.Join(repo, "vendor", fmt.Sprintf("r%d", rng.IntN(2)))
				put(t, filepath.Join(nested, "a.txt"), "a")
				if _, err := os.Stat(filepath.Join(nested, ".git")); err != nil {
					gitIn(t, nested, "init", "-q")
				}
			case "ignored-dir":
				put(t, filepath.Join(repo, "node_modules", fmt.Sprintf("p%d/index.js", rng.IntN(3))), "x")
				put(t, filepath.Join(repo, filepath.FromSlash(dir), "build", "gen.go"), "x")
			}
			did = append(did, op+" "+p)
		}
		a, err := repowatch.Query(context.Background(), socket, repo)
		if err != nil {
			select {
			case why := <-ended:
				err = fmt.Errorf("%w (the watcher ended: %v)", err, why)
			default:
			}
			t.Fatalf("round %d (%s): %v", round, strings.Join(did, "; "), err)
		}
		readAgain += len(a.Changed)
		full, err := repocopy.ReadScan(context.Background(), git, repo)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sorted(a.Scan.Entries), sorted(full.Entries); !slices.Equal(got, want) {
			t.Fatalf("round %d (%s; read again %q):\nthe watcher's scan\n  %s\ngit's status\n  %s", round, strings.Join(did, "; "),
				a.Changed, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		if a.Scan.Head != full.Head || a.Scan.Tree != full.Tree || a.Scan.Config != full.Config {
			t.Fatalf("round %d: HEAD, tree or configuration differ: %+v / %+v", round, a.Scan, full)
		}
	}
	if readAgain == 0 {
		t.Fatal("the watcher never read a path again: the comparison proves nothing")
	}
	// With nothing changed, nothing is read again.
	a, err := repowatch.Query(context.Background(), socket, repo)
	if err != nil || len(a.Changed) != 0 {
		t.Fatalf("an unchanged repository: read again %q, %v", a.Changed, err)
	}
}

// TestANewSecretInAWatchedRepositoryIsHidden: an ignored file written after the watcher
// started — in a tracked directory, in a new one, in a directory that held only ignored
// files — is among the answer's ignored paths (the copy's whiteouts), and a non-ignored file
// made in a directory that was ignored because all it held was is untracked again.
func TestANewSecretInAWatchedRepositoryIsHidden(t *testing.T) {
	repo, git := repository(t)
	socket, _ := serve(t, repo, git, nil)
	put(t, filepath.Join(repo, ".env"), "TOKEN=1")
	put(t, filepath.Join(repo, "src/m3/.env"), "TOKEN=2")
	put(t, filepath.Join(repo, "newdir/deeper/.env"), "TOKEN=3")
	put(t, filepath.Join(repo, "logs/keep.txt"), "not ignored")
	a, err := repowatch.Query(context.Background(), socket, repo)
	if err != nil {
		t.Fatal(err)
	}
	ignored := a.Scan.Ignored()
	for _, secret := range []string{".env", "src/m3/.env", "newdir/deeper/.env", "logs/x.log", "build/out/a.o"} {
		// Hidden: the path is ignored, or a directory above it is ignored as a whole.
		if !slices.ContainsFunc(ignored, func(p string) bool {
			return p == secret || strings.HasSuffix(p, "/") && strings.HasPrefix(secret, p)
		}) {
			t.Errorf("%s is not hidden by the ignored paths %q", secret, ignored)
		}
	}
	if !slices.Contains(a.Scan.Untracked(), "logs/") {
		t.Errorf("logs/ holds an untracked file now, yet the untracked directories are %q", a.Scan.Untracked())
	}
}

// TestTheWatcherEndsWhenWhatTheScanDependsOnChanges: a change to anything besides the work
// tree's files and what is tracked that the status depends on ends the watcher (the next
// session reads in full and starts another): the ignore rules, info/exclude, the user's
// configuration and excludes file, the repository's configuration, a renamed directory, the
// .git replaced, a file tracked below a directory it does not watch.
func TestTheWatcherEndsWhenWhatTheScanDependsOnChanges(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, repo string)
	}{
		{"a .gitignore", func(t *testing.T, repo string) { put(t, filepath.Join(repo, "src/.gitignore"), "*.go\n") }},
		{"a file below a directory a rule ignores tracked", func(t *testing.T, repo string) {
			put(t, filepath.Join(repo, "build/kept.txt"), "forced")
			gitIn(t, repo, "add", "-f", "build/kept.txt")
			if _, err := repowatch.Query(context.Background(), filepath.Join(os.Getenv("WATCH_SOCKET")), repo); err == nil {
				t.Error("the watcher answered although it does not watch build/, which holds a tracked file now")
			}
		}},
		{"info/exclude", func(t *testing.T, repo string) { put(t, filepath.Join(repo, ".git/info/exclude"), "*.txt\n") }},
		{"the user's configuration", func(t *testing.T, repo string) {
			put(t, filepath.Join(os.Getenv("HOME"), ".gitconfig"), "[core]\n\texcludesFile = ~/ignore\n")
		}},
		{"the user's excludes file", func(t *testing.T, repo string) {
			put(t, filepath.Join(os.Getenv("HOME"), ".config/git/ignore"), "*.txt\n")
		}},
		{"the repository's configuration", func(t *testing.T, repo string) { gitIn(t, repo, "config", "core.excludesFile", "/etc/x") }},
		{"a renamed directory", func(t *testing.T, repo string) {
			if err := os.Rename(filepath.Join(repo, "src/m1"), filepath.Join(repo, "src/m9")); err != nil {
				t.Fatal(err)
			}
		}},
		{"the .git replaced", func(t *testing.T, repo string) {
			if err := os.Rename(filepath.Join(repo, ".git"), filepath.Join(repo, ".git-old")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo, git := repository(t)
			socket, ended := serve(t, repo, git, nil)
			t.Setenv("WATCH_SOCKET", socket)
			c.change(t, repo)
			select {
			case err := <-ended:
				t.Logf("ended: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the watcher still runs 10 s after the change")
			}
			if _, err := repowatch.Query(context.Background(), socket, repo); !errors.Is(err, repowatch.ErrNoWatcher) {
				t.Fatalf("a question after the change: %v, want no watcher", err)
			}
		})
	}
}

// TestTheWatcherReadsAgainWhatIsTrackedChanges: a commit, a checkout of another branch, a
// detached HEAD, a file staged or untracked with git rm --cached change what is tracked; the
// watcher reads the repository in full again before its next answer and goes on — its
// answers stay git's status, through work tree changes in between.
func TestTheWatcherReadsAgainWhatIsTrackedChanges(t *testing.T) {
	repo, git := repository(t)
	socket, ended := serve(t, repo, git, nil)
	steps := []func(){
		func() {
			put(t, filepath.Join(repo, "notes/todo.txt"), "staged")
			gitIn(t, repo, "add", "notes/todo.txt")
		},
		func() { gitIn(t, repo, "commit", "-q", "-m", "todo") },
		func() { put(t, filepath.Join(repo, "src/m0/new.go"), "package m\n") },
		func() { gitIn(t, repo, "checkout", "-q", "-b", "feature") },
		func() {
			put(t, filepath.Join(repo, "src/m1/f.go"), "package m // changed\n")
			gitIn(t, repo, "commit", "-q", "-am", "f")
		},
		func() { gitIn(t, repo, "checkout", "-q", "main") },
		func() { gitIn(t, repo, "rm", "-q", "--cached", "README") },
		func() { put(t, filepath.Join(repo, "README"), "now untracked\n") },
		func() { gitIn(t, repo, "checkout", "-q", "--detach", "feature") },
		func() { put(t, filepath.Join(repo, "src/m2/.env"), "SECRET") },
	}
	for i, step := range steps {
		step()
		a, err := repowatch.Query(context.Background(), socket, repo)
		if err != nil {
			select {
			case why := <-ended:
				err = fmt.Errorf("%w (the watcher ended: %v)", err, why)
			default:
			}
			t.Fatalf("step %d: %v", i, err)
		}
		full, err := repocopy.ReadScan(context.Background(), git, repo)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sorted(a.Scan.Entries), sorted(full.Entries); !slices.Equal(got, want) || a.Scan.Head != full.Head || a.Scan.Branch != full.Branch || a.Scan.Tree != full.Tree {
			t.Fatalf("step %d: the watcher's scan (HEAD %s %s)\n  %s\ngit's (HEAD %s %s)\n  %s", i, a.Scan.Head, a.Scan.Branch,
				strings.Join(got, "\n  "), full.Head, full.Branch, strings.Join(want, "\n  "))
		}
	}
}

// TestTheWatcherRefusesWhatItCannotKeep: more directories than it may watch, more changed
// paths than it may read again, submodules — it does not start, or it ends, and says why.
func TestTheWatcherRefusesWhatItCannotKeep(t *testing.T) {
	t.Run("too many directories", func(t *testing.T) {
		repo, git := repository(t)
		s := &repowatch.Server{Repo: repo, Socket: filepath.Join(t.TempDir(), "w.sock"), Git: git, MaxWatches: 5}
		if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 5 directories") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("too many changes", func(t *testing.T) {
		repo, git := repository(t)
		socket, ended := serve(t, repo, git, func(s *repowatch.Server) { s.MaxChanges = 3 })
		for i := range 4 {
			put(t, filepath.Join(repo, fmt.Sprintf("src/m0/n%d.go", i)), "x")
		}
		if _, err := repowatch.Query(context.Background(), socket, repo); err == nil || !strings.Contains(err.Error(), "more than 3 paths") {
			t.Fatalf("got %v", err)
		}
		<-ended
	})
	t.Run("submodules", func(t *testing.T) {
		repo, git := repository(t)
		gitIn(t, repo, "update-index", "--add", "--cacheinfo", "160000,"+gitIn(t, repo, "rev-parse", "HEAD")+",sub")
		s := &repowatch.Server{Repo: repo, Socket: filepath.Join(t.TempDir(), "w.sock"), Git: git}
		if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "submodules") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a second watcher", func(t *testing.T) {
		repo, git := repository(t)
		socket, _ := serve(t, repo, git, nil)
		s := &repowatch.Server{Repo: repo, Socket: socket, Git: git}
		if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "another watcher") {
			t.Fatalf("got %v", err)
		}
		if _, err := repowatch.Query(context.Background(), socket, repo); err != nil {
			t.Fatalf("the first watcher no longer answers: %v", err)
		}
	})
	t.Run("another repository's question", func(t *testing.T) {
		repo, git := repository(t)
		socket, _ := serve(t, repo, git, nil)
		if _, err := repowatch.Query(context.Background(), socket, repo+"-other"); err == nil || !strings.Contains(err.Error(), "not "+repo+"-other") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestTheSocketsDirectoryIsPrivate: a directory others can enter, or a symbolic link, is
// refused.
func TestTheSocketsDirectoryIsPrivate(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := repowatch.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := repowatch.Dir(); err == nil || !strings.Contains(err.Error(), "not a private directory") {
		t.Fatalf("a directory others can enter: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := repowatch.Dir(); err == nil {
		t.Fatal("a symbolic link is taken as the sockets' directory")
	}
}

// TestRunningNamesTheWatchedRepositories: doctor's list is the watchers that answer, by the
// repository each watches; a stale socket is not one.
func TestRunningNamesTheWatchedRepositories(t *testing.T) {
	repo, git := repository(t)
	var socket string
	serve(t, repo, git, func(s *repowatch.Server) {
		log, err := os.Create(s.Socket + ".log")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		s.Log, socket = log, s.Socket
	})
	dir := filepath.Dir(socket)
	if err := os.WriteFile(filepath.Join(dir, "stale.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := repowatch.Running(dir)
	if err != nil || !slices.Equal(got, []string{repo}) {
		t.Fatalf("Running: %q, %v; want [%s]", got, err, repo)
	}
}
