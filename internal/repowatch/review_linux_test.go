package repowatch_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/repowatch"
)

func sh(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestWhatAReviewFoundTheWatcherMissed: changes an independent probe made that the watcher
// did not see, each of which let a session get a scan that showed a file git ignores (or
// disagreed with git otherwise). After each, the watcher must either refuse to answer (the
// session then reads in full) or answer what git's full status says.
func TestWhatAReviewFoundTheWatcherMissed(t *testing.T) {
	for _, c := range []struct {
		name    string
		root    bool
		refuses bool // to start
		before  func(t *testing.T, repo, home string)
		change  func(t *testing.T, repo, home string)
	}{
		{name: "a directory above the repository renamed and another repository put in its place", change: func(t *testing.T, repo, home string) {
			parent := filepath.Dir(repo)
			if err := os.Rename(parent, parent+"-old"); err != nil {
				t.Fatal(err)
			}
			put(t, filepath.Join(repo, "README"), "other\n")
			put(t, filepath.Join(repo, ".gitignore"), "*.secret\n")
			gitIn(t, filepath.Dir(repo), "init", "-q", "-b", "main", repo)
			gitIn(t, repo, "add", "-A")
			gitIn(t, repo, "commit", "-q", "-m", "other")
			put(t, filepath.Join(repo, "db.secret"), "PASSWORD")
		}},
		{name: "an included configuration file made later", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, ".gitconfig"), "[include]\n\tpath = ~/.gitconfig.local\n")
		}, change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "my-ignore"), "creds.txt\n")
			put(t, filepath.Join(home, ".gitconfig.local"), "[core]\n\texcludesFile = ~/my-ignore\n")
		}},
		{name: "a conditionally included file made later", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, ".gitconfig"), "[includeIf \"gitdir:/\"]\n\tpath = "+home+"/work.inc\n")
		}, change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "my-ignore"), "creds.txt\n")
			put(t, filepath.Join(home, "work.inc"), "[core]\n\texcludesFile = ~/my-ignore\n")
		}},
		{name: "info/exclude a symbolic link whose target changes", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "excl"), "# none\n")
			_ = os.Remove(filepath.Join(repo, ".git/info/exclude"))
			if err := os.Symlink(filepath.Join(home, "excl"), filepath.Join(repo, ".git/info/exclude")); err != nil {
				t.Fatal(err)
			}
		}, change: func(t *testing.T, repo, home string) { put(t, filepath.Join(home, "excl"), "creds.txt\n") }},
		{name: "a linked directory on the way to the excludes file repointed", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "dot1/git/ignore"), "# none\n")
			put(t, filepath.Join(home, "dot2/git/ignore"), "creds.txt\n")
			if err := os.Symlink(filepath.Join(home, "dot1"), filepath.Join(home, ".config")); err != nil {
				t.Fatal(err)
			}
		}, change: func(t *testing.T, repo, home string) {
			sh(t, home, "ln -sfn dot2 .config.new && mv -T .config.new .config")
		}},
		{name: "a file system mounted inside the tree as it starts", root: true, refuses: true, before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(repo, ".gitignore"), "build/\nnode_modules/\n*.log\n.env\ncreds.txt\n")
			gitIn(t, repo, "commit", "-qam", "rules")
			sh(t, repo, "mount -t tmpfs none notes && echo hi > notes/visible.txt")
			t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(repo, "notes")).Run() })
		}, change: func(t *testing.T, repo, home string) { sh(t, repo, "umount notes") }},
		{name: "a file system mounted inside the tree", root: true, change: func(t *testing.T, repo, home string) {
			o := t.TempDir()
			put(t, filepath.Join(o, ".env"), "TOKEN")
			sh(t, repo, "mount --bind "+o+" notes")
			t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(repo, "notes")).Run() })
		}},
		{name: "a staged rename's new side edited", before: func(t *testing.T, repo, home string) {
			gitIn(t, repo, "mv", "src/m0/f.go", "src/m1/h.go")
		}, change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(repo, "src/m1/h.go"), "package m // changed\n")
		}},
		{name: "a staged rename's old side made again", before: func(t *testing.T, repo, home string) {
			gitIn(t, repo, "mv", "src/m0/f.go", "src/m1/h.go")
			put(t, filepath.Join(repo, "src/m1/h.go"), "package m // changed in the work tree\n")
		}, change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(repo, "src/m0/f.go"), "package m // recreated\n")
		}},
		// A second probe, on the fixed code:
		{name: "the directory of the user's excludes file moved aside and made again", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, ".config/git/ignore"), "# none\n")
		}, change: func(t *testing.T, repo, home string) {
			sh(t, home, "mv .config .config.old && mkdir -p .config/git && echo creds.txt > .config/git/ignore")
		}},
		{name: "the directory of core.excludesFile moved aside and made again", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "ign/global"), "# none\n")
			put(t, filepath.Join(home, ".gitconfig"), "[core]\n\texcludesFile = ~/ign/global\n")
		}, change: func(t *testing.T, repo, home string) {
			sh(t, home, "mv ign ign.old && mkdir ign && echo creds.txt > ign/global")
		}},
		{name: "a linked configuration's directory moved aside and made again", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "dotfiles/gitconfig"), "[user]\n\tname = u\n")
			sh(t, home, "ln -s dotfiles/gitconfig .gitconfig && echo creds.txt > my-ignore")
		}, change: func(t *testing.T, repo, home string) {
			sh(t, home, "mv dotfiles dotfiles.old && mkdir dotfiles && printf '[core]\\n\\texcludesFile = ~/my-ignore\\n' > dotfiles/gitconfig")
		}},
		{name: "the user's configuration edited through a hard link", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "dotfiles/gitconfig"), "[user]\n\tname = u\n")
			sh(t, home, "ln dotfiles/gitconfig .gitconfig && echo creds.txt > my-ignore")
		}, change: func(t *testing.T, repo, home string) {
			sh(t, home, "printf '[core]\\n\\texcludesFile = ~/my-ignore\\n' >> dotfiles/gitconfig")
		}},
		{name: "a .gitignore edited through a hard link", before: func(t *testing.T, repo, home string) { sh(t, repo, "ln .gitignore "+home+"/gi") },
			change: func(t *testing.T, repo, home string) { sh(t, home, "echo creds.txt >> gi") }},
		{name: "info/exclude edited through a hard link", before: func(t *testing.T, repo, home string) { sh(t, repo, "ln .git/info/exclude "+home+"/ex") },
			change: func(t *testing.T, repo, home string) { sh(t, home, "echo creds.txt >> ex") }},
		{name: "an excludes file included on another branch only", before: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, ".gitconfig"), "[includeIf \"onbranch:feature\"]\n\tpath = ~/feature.inc\n")
			put(t, filepath.Join(home, "feature.inc"), "[core]\n\texcludesFile = ~/feature-ignore\n")
			put(t, filepath.Join(home, "feature-ignore"), "# none\n")
		}, change: func(t *testing.T, repo, home string) {
			gitIn(t, repo, "checkout", "-q", "-b", "feature")
			settle(t, repo)
			put(t, filepath.Join(home, "feature-ignore"), "creds.txt\n")
		}},
		{name: "GIT_CONFIG_GLOBAL naming a file made later", before: func(t *testing.T, repo, home string) {
			t.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(home, "cfg/global"))
			put(t, filepath.Join(home, "my-ignore"), "creds.txt\n")
		}, change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(home, "cfg/global"), "[core]\n\texcludesFile = ~/my-ignore\n")
		}},
		{name: "HEAD replaced (git replace)", change: func(t *testing.T, repo, home string) {
			put(t, filepath.Join(repo, "src/m0/f.go"), "package m // other\n")
			gitIn(t, repo, "add", "src/m0/f.go")
			c := gitIn(t, repo, "commit-tree", gitIn(t, repo, "write-tree"), "-p", "HEAD", "-m", "x")
			gitIn(t, repo, "reset", "-q", "--hard")
			settle(t, repo)
			gitIn(t, repo, "replace", "HEAD", c)
		}},
		{name: "HEAD's branch a symbolic ref to a branch that moves", before: func(t *testing.T, repo, home string) {
			gitIn(t, repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
			gitIn(t, repo, "symbolic-ref", "HEAD", "refs/heads/alias")
		}, change: func(t *testing.T, repo, home string) {
			c := gitIn(t, repo, "commit-tree", gitIn(t, repo, "rev-parse", "HEAD^{tree}"), "-p", "HEAD", "-m", "y")
			gitIn(t, repo, "update-ref", "--no-deref", "refs/heads/main", c)
		}},
		{name: "refs/heads moved aside and made again", change: func(t *testing.T, repo, home string) {
			c := gitIn(t, repo, "commit-tree", gitIn(t, repo, "rev-parse", "HEAD^{tree}"), "-p", "HEAD", "-m", "z")
			settle(t, repo)
			sh(t, repo, "cd .git/refs && mv heads heads.old && mkdir heads && echo "+c+" > heads/main")
		}},
		{name: "GIT_INDEX_FILE set", refuses: true, before: func(t *testing.T, repo, home string) {
			t.Setenv("GIT_INDEX_FILE", filepath.Join(home, "idx"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Getuid() != 0 {
				if os.Getenv("CI") == "true" {
					t.Fatal("mounting needs root, and CI runs the tests as root")
				}
				t.Skip("mounting needs root (CI runs this as root)")
			}
			repo, git := repository(t)
			home := os.Getenv("HOME")
			put(t, filepath.Join(repo, "notes/creds.txt"), "SECRET")
			if c.before != nil {
				c.before(t, repo, home)
			}
			if c.refuses {
				s := &repowatch.Server{Repo: repo, Socket: filepath.Join(t.TempDir(), "w.sock"), Git: git}
				if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "mounted inside") && !strings.Contains(err.Error(), "is set") {
					t.Fatalf("the watcher started (or failed otherwise: %v)", err)
				}
				return
			}
			socket, _ := serve(t, repo, git, nil)
			t.Setenv("WATCH_SOCKET", socket)
			c.change(t, repo, home)
			a, err := repowatch.Query(context.Background(), socket, repo)
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			full, err := repocopy.ReadScan(context.Background(), git, repo)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sorted(a.Scan.Entries), sorted(full.Entries); !slices.Equal(got, want) || a.Scan.Head != full.Head || a.Scan.Config != full.Config {
				t.Fatalf("the watcher answered (read again %q)\n  %s\ngit's status\n  %s", a.Changed, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

// TestASessionWithAnotherEnvironmentHasAWatcherOfItsOwn: the variables git reads its
// configuration by are part of the socket's name (a watcher's git reads what its sessions'
// would); others are not.
func TestASessionWithAnotherEnvironmentHasAWatcherOfItsOwn(t *testing.T) {
	base := []string{"HOME=/home/u", "PATH=/bin", "TERM=xterm"}
	same := repowatch.SocketPath("/d", "/s", "/r", base)
	for _, other := range []string{"XDG_CONFIG_HOME=/elsewhere", "GIT_CONFIG_GLOBAL=/x", "GIT_CONFIG_COUNT=1", "HOME=/home/v"} {
		if repowatch.SocketPath("/d", "/s", "/r", append(slices.Clone(base), other)) == same {
			t.Errorf("%s does not change the socket", other)
		}
	}
	if repowatch.SocketPath("/d", "/s", "/r", append(slices.Clone(base), "TERM=dumb", "PATH=/usr/bin")) != same {
		t.Error("variables git does not read change the socket")
	}
}

// TestAWatcherThatDoesNotAnswerDoesNotHoldTheQuestion: a socket that accepts and never answers
// gives an error by the question's deadline.
func TestAWatcherThatDoesNotAnswerDoesNotHoldTheQuestion(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "w.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := repowatch.Query(ctx, sock, "/r"); err == nil {
		t.Fatal("a watcher that never answers gave an answer")
	}
}

// settle has the watcher answer (it takes what happened so far). A refusal here is logged:
// the question after the change then finds no watcher, which is the safe outcome.
func settle(t *testing.T, repo string) {
	t.Helper()
	if _, err := repowatch.Query(context.Background(), os.Getenv("WATCH_SOCKET"), repo); err != nil {
		t.Logf("refused already: %v", err)
	}
}
