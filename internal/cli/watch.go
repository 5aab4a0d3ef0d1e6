package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/repowatch"
)

// watchEnv turns the repository watcher off when set to "off" (every session then reads
// its repository in full).
const watchEnv = "SOURCEOSCTL_REPO_WATCH"

// newWatchRepoCmd is the repository watcher's process (internal/repowatch), started by a
// session in the background; not for people.
func newWatchRepoCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "watch-repo REPO",
		Short: "Watch a repository so that the next session reads only what changed (started by sessions)",
		Long: `Watch the repository REPO (its top level) with inotify and answer its sessions with its
status kept up to date, until something it cannot follow changes (see README, "The
repository's watcher"). Sessions start it, in the background, when none answered; its log
is next to its socket in $TMPDIR/sourceosctl-<uid>/.`,
		Example: `  sourceosctl agent-machine watch-repo ~/dev/app &   # what a session does for you
  SOURCEOSCTL_REPO_WATCH=off sourceosctl agent-machine shell --repo ~/dev/app   # no watcher`,
		Hidden: true,
		Args:   usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs, err := f.Dirs()
			if err != nil {
				return err
			}
			git, err := f.LookPath("git")
			if err != nil {
				return errors.New("git is not installed")
			}
			dir, err := repowatch.Dir()
			if err != nil {
				return err
			}
			socket := repowatch.SocketPath(dir, dirs.State, args[0], f.Environ())
			// Appended to: a second watcher that finds the first holding the repository must
			// not erase the first one's lines (doctor reads the last "watching" line).
			log, err := os.OpenFile(socket+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND|noFollow, 0o600)
			if err != nil {
				return err
			}
			defer log.Close()
			s := &repowatch.Server{Repo: args[0], Socket: socket, Git: gitrun.Git{Binary: git}, Log: log}
			err = s.Run(cmd.Context())
			if err != nil {
				_, _ = log.WriteString("not watching: " + err.Error() + "\n")
			}
			return nil // why it ended is in its log: no one reads its exit code
		},
	}
}

// repoWatcher asks a repository's watcher for its scan and starts one (this binary, in the
// background) where none answered.
type repoWatcher struct {
	state      string
	executable string
	env        []string
}

func (w repoWatcher) Scan(ctx context.Context, repo string) (repocopy.Scan, []string, error) {
	dir, err := repowatch.Dir()
	if err != nil {
		return repocopy.Scan{}, nil, err
	}
	a, err := repowatch.Query(ctx, repowatch.SocketPath(dir, w.state, repo, w.env), repo)
	return a.Scan, a.Changed, err
}

// Start starts the watcher in a session of its own, its standard streams closed, and does
// not wait for it.
func (w repoWatcher) Start(repo string) error {
	cmd := exec.Command(w.executable, "agent-machine", "watch-repo", repo)
	cmd.Env, cmd.Dir = w.env, "/"
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// watcherFor is the sessions' repository watcher, or nil where there is none: off by
// SOURCEOSCTL_REPO_WATCH=off, or not a real run of this binary (tests in process).
func watcherFor(f *Factory, state string) *repoWatcher {
	if f.Executable == nil || f.Getenv(watchEnv) == "off" || f.GOOS != "linux" {
		return nil
	}
	exe, err := f.Executable()
	if err != nil || !filepath.IsAbs(exe) {
		return nil
	}
	return &repoWatcher{state: state, executable: exe, env: f.Environ()}
}
