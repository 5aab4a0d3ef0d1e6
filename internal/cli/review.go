package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

// reviewOptions are what the review commands (sessions, diff, merge, discard) share: the
// state directory that holds the copies, and git, run in the user's repository as its owner.
type reviewOptions struct {
	IO    *IOStreams
	State func() (string, error)
	Git   func() (gitrun.Git, error)
	Now   func() time.Time
}

func newReviewOptions(f *Factory) *reviewOptions {
	return &reviewOptions{IO: f.IO, Now: f.Now,
		State: func() (string, error) {
			d, err := f.Dirs()
			return d.State, err
		},
		Git: func() (gitrun.Git, error) {
			git, err := f.LookPath("git")
			if err != nil {
				return gitrun.Git{}, &agentmachine.HintError{Err: errors.New("git is not installed"), Fix: "install git: a session's branch lives in your repository"}
			}
			return gitrun.Git{Binary: git}, nil
		},
	}
}

// load finds a session's copy and git.
func (o *reviewOptions) load(id string) (*repocopy.Copy, gitrun.Git, error) {
	state, err := o.State()
	if err != nil {
		return nil, gitrun.Git{}, err
	}
	c, err := repocopy.Load(state, id)
	if err != nil {
		return nil, gitrun.Git{}, &agentmachine.HintError{Err: err, Fix: "list them with: sourceosctl agent-machine sessions"}
	}
	g, err := o.Git()
	return c, g, err
}

func newSessionsCmd(f *Factory) *cobra.Command {
	o := newReviewOptions(f)
	var repo, output string
	cmd := &cobra.Command{
		Use:   "sessions [--repo PATH]",
		Short: "List sessions' branches: what each left, and whether it is merged",
		Long: `List the sessions whose copies sourceosctl keeps: the repository, the session's branch,
its state (to review, merged, no changes, not collected) and its diffstat. A copy stays until
you merge or discard its session.`,
		Example: `  sourceosctl agent-machine sessions
  sourceosctl agent-machine sessions --repo ~/dev/app -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			state, err := o.State()
			if err != nil {
				return err
			}
			copies, broken, err := repocopy.List(state)
			if err != nil {
				return err
			}
			if repo != "" {
				abs, err := filepath.Abs(repo)
				if err != nil {
					return err
				}
				var mine []*repocopy.Copy
				for _, c := range copies {
					if c.Repo == abs {
						mine = append(mine, c)
					}
				}
				copies = mine
			}
			for _, b := range broken {
				fmt.Fprintf(o.IO.ErrOut, "! %s: unreadable copy description (in %s)\n", b, repocopy.CopiesDir(state))
			}
			if output == outJSON {
				return writeJSON(o.IO.Out, sessionRows(copies))
			}
			return writeSessions(o.IO.Out, copies)
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "only sessions on the repository `PATH`")
	addOutputFlag(cmd, &output, outTable, outJSON)
	return cmd
}

// sessionRow is one session in the list's JSON.
type sessionRow struct {
	Session string `json:"session"`
	Repo    string `json:"repo"`
	Branch  string `json:"branch"`
	State   string `json:"state"`
	Commits int    `json:"commits"`
	Stat    string `json:"stat,omitempty"`
	Copy    string `json:"copy"`
}

func sessionRows(copies []*repocopy.Copy) []sessionRow {
	rows := []sessionRow{}
	for _, c := range copies {
		r := sessionRow{Session: c.Session, Repo: c.Repo, Branch: c.Branch, State: c.State(), Copy: c.Dir}
		if c.Result != nil {
			r.Commits, r.Stat = len(c.Result.Commits), c.Result.Stat
		}
		rows = append(rows, r)
	}
	return rows
}

func writeSessions(w io.Writer, copies []*repocopy.Copy) error {
	if len(copies) == 0 {
		_, err := fmt.Fprintln(w, "No sessions to review: copies appear here after shell or run on a git repository.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTATE\tBRANCH\tCOMMITS\tCHANGES\tREPOSITORY")
	for _, r := range sessionRows(copies) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Session, r.State, r.Branch, r.Commits, orDashString(r.Stat), r.Repo)
	}
	return tw.Flush()
}

func orDashString(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDiffCmd(f *Factory) *cobra.Command {
	o := newReviewOptions(f)
	var stat bool
	cmd := &cobra.Command{
		Use:   "diff SESSION",
		Short: "Show what a session's branch changes (git diff of its base and its head)",
		Long: `Print the diff of a session's branch: from where it started (your HEAD and the
uncommitted changes you had) to its last commit, which includes what the agent left
uncommitted. It is the patch recorded, signed, in the session's evidence. On a terminal,
control characters in it are shown escaped (\x1b…): the content is the agent's, and must not
move the cursor or rewrite what you are reading; redirected, it is the patch byte for byte.`,
		Example: `  sourceosctl agent-machine diff 20261129t120000.000000z-0123456789ab
  sourceosctl agent-machine diff 20261129t120000.000000z-0123456789ab --stat`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, g, err := o.load(args[0])
			if err != nil {
				return err
			}
			out, err := c.Diff(cmd.Context(), g, stat)
			if err != nil {
				return err
			}
			if o.IO.OutTTY { // the content is the agent's: on a terminal it cannot drive it
				out = []byte(textsafe.Text(string(out)))
			}
			_, err = o.IO.Out.Write(out)
			return err
		},
	}
	cmd.Flags().BoolVar(&stat, "stat", false, "only the files changed and how much")
	return cmd
}

func newMergeCmd(f *Factory) *cobra.Command {
	o := newReviewOptions(f)
	var opts repocopy.MergeOptions
	var output string
	cmd := &cobra.Command{
		Use:   "merge SESSION [--squash | --no-ff] [--dry-run] [--allow-hook-changes]",
		Short: "Merge a session's branch into your current branch",
		Long: `Merge a session's branch into the branch you have checked out: a fast-forward when
your branch has not moved, else a merge commit (--no-ff always makes one; --squash makes one
commit of all the session's changes). It first checks with git merge-tree that the branches
merge cleanly: on a conflict nothing is changed and the files are named. The session started
from your uncommitted changes too (its first commit holds them): if you still have them, git
will not overwrite them — stash them (git stash -u), merge, then drop the stash.

Refused, changing nothing: a branch that adds a file you have as an ignored or untracked file
(git would replace an ignored .env of yours without a word), and — unless you pass
--allow-hook-changes after reviewing them — one that changes what your git hooks run: files
below a core.hooksPath inside the repository (husky's .husky) or a hook manager's
configuration (.pre-commit-config.yaml, lefthook.yml, .overcommit.yml).

git runs in your repository as you would run it, without your hooks (the merge may change
them); the branch arrived as git objects (fetched with every object checked), never by
running anything the session wrote.`,
		Example: `  sourceosctl agent-machine merge 20261129t120000.000000z-0123456789ab --dry-run
  sourceosctl agent-machine merge 20261129t120000.000000z-0123456789ab --squash`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Squash && opts.NoFF {
				return usageErrorf("--squash and --no-ff are two different merges: choose one")
			}
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			c, g, err := o.load(args[0])
			if err != nil {
				return err
			}
			plan, err := c.Merge(cmd.Context(), g, opts, o.Now())
			if output == outJSON && (err == nil || errors.Is(err, repocopy.ErrConflicts)) {
				if werr := writeJSON(o.IO.Out, plan); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if output == outTable {
				into := orDashString(plan.Into)
				verb := "Merged"
				if opts.DryRun {
					verb = "Would merge"
				}
				fmt.Fprintf(o.IO.Out, "%s %s into %s: %s, %s.\n", verb, c.Branch, into, plan.How, orDashString(plan.Stat))
				if len(plan.Hooks) > 0 {
					fmt.Fprintf(o.IO.ErrOut, "! it changes what your git hooks run: %s\n", textsafe.String(strings.Join(plan.Hooks, ", ")))
				}
				for _, l := range plan.OutsideLinks {
					fmt.Fprintf(o.IO.ErrOut, "! a symbolic link out of the repository: %s (a tool that writes through it writes there)\n", textsafe.String(l))
				}
			}
			if opts.DryRun {
				fmt.Fprintln(o.IO.ErrOut, "dry run: nothing was changed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Squash, "squash", false, "one commit of the session's changes instead of its history")
	cmd.Flags().BoolVar(&opts.NoFF, "no-ff", false, "a merge commit even when a fast-forward is possible")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "say how it would merge, and whether it conflicts, and change nothing")
	cmd.Flags().BoolVar(&opts.AllowHooks, "allow-hook-changes", false, "merge a branch that changes what your git hooks run (review those files first)")
	addOutputFlag(cmd, &output, outTable, outJSON)
	return cmd
}

func newDiscardCmd(f *Factory) *cobra.Command {
	o := newReviewOptions(f)
	var force, dryRun bool
	cmd := &cobra.Command{
		Use:   "discard SESSION [--dry-run]",
		Short: "Delete a session's branch and its copy (its evidence stays)",
		Long: `Delete the session's branch from your repository and the copy sourceosctl kept. The
branch must still be where the session left it (--force deletes it anyway). A copy whose
session has not ended — or was killed before its end, so that nothing brought its work back
— is discarded only with --force: it may hold the agent's work. The session's evidence
bundle is never touched.`,
		Example: `  sourceosctl agent-machine discard 20261129t120000.000000z-0123456789ab --dry-run`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, g, err := o.load(args[0])
			if err != nil {
				return err
			}
			did, err := c.Discard(cmd.Context(), g, force, dryRun)
			verb := "done"
			if dryRun {
				verb = "would"
			}
			for _, d := range did {
				fmt.Fprintf(o.IO.Out, "%s: %s\n", verb, d)
			}
			if err == nil && dryRun {
				fmt.Fprintln(o.IO.ErrOut, "dry run: nothing was changed")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete the branch even if it moved since the session, or the copy of a session that has not ended")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be deleted, and delete nothing")
	return cmd
}
