package repocopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// States of a copy, as the sessions list shows them.
const (
	StatePreparing = "running or interrupted" // no result yet
	StateNoChanges = "no changes"
	StateReview    = "to review"
	StateMerged    = "merged"
	StateFailed    = "not collected"
)

// State is the copy's place in its review.
func (c *Copy) State() string {
	switch {
	case c.Merged != "":
		return StateMerged
	case c.CollectError != "":
		return StateFailed
	case c.Result == nil:
		return StatePreparing
	case !c.Result.Changed:
		return StateNoChanges
	}
	return StateReview
}

// Diff is `git diff Base Head` of the session's branch, in the user's repository (no
// external diff program, no textconv: the branch's content drives nothing).
func (c *Copy) Diff(ctx context.Context, g gitrun.Git, stat bool) ([]byte, error) {
	if err := c.needBranch(); err != nil {
		return nil, err
	}
	args := []string{"diff", "--no-ext-diff", "--no-textconv", "--no-color"}
	if stat {
		args = append(args, "--stat")
	} else {
		args = append(args, "--binary")
	}
	return g.Raw(ctx, c.Repo, append(args, c.Base, c.Result.Head)...)
}

func (c *Copy) needBranch() error {
	switch c.State() {
	case StateReview:
		return nil
	case StateMerged:
		return fmt.Errorf("session %s was merged (%s)", c.Session, short(c.Merged))
	case StateNoChanges:
		return fmt.Errorf("session %s changed nothing: it has no branch", c.Session)
	case StateFailed:
		return fmt.Errorf("session %s's work was not brought back (%s); it is in %s", c.Session, c.CollectError, c.Dir)
	}
	return fmt.Errorf("session %s has no branch yet (still running, or interrupted before its end)", c.Session)
}

// MergeOptions choose how a session's branch is merged.
type MergeOptions struct {
	// Squash makes one commit of the branch's changes; NoFF always makes a merge commit.
	Squash, NoFF bool
	DryRun       bool
}

// MergePlan is what merging would do.
type MergePlan struct {
	Into        string   `json:"into"`        // the user's current branch ("" when detached)
	FastForward bool     `json:"fastForward"` // the branch is ahead of HEAD only
	Conflicts   []string `json:"conflicts"`   // files both sides changed differently
	Stat        string   `json:"stat"`
	How         string   `json:"how"` // fast-forward, merge commit, squash
}

// ErrConflicts says a merge would conflict: nothing was changed.
var ErrConflicts = errors.New("the session's branch conflicts with your branch")

// Merge merges the session's branch into the user's current branch, as the user would with
// git merge — after checking with git merge-tree that it merges cleanly (a conflict changes
// nothing and names the files). The copy's layers are removed afterwards; the branch stays
// until discard.
func (c *Copy) Merge(ctx context.Context, g gitrun.Git, o MergeOptions, now time.Time) (MergePlan, error) {
	var p MergePlan
	if err := c.needBranch(); err != nil {
		return p, err
	}
	if err := c.branchUnmoved(ctx, g); err != nil {
		return p, err
	}
	p.Into, _ = g.Output(ctx, c.Repo, "symbolic-ref", "--quiet", "--short", "HEAD")
	head, err := g.Output(ctx, c.Repo, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return p, err
	}
	_, ancestorErr := g.Output(ctx, c.Repo, "merge-base", "--is-ancestor", head, c.Result.Head)
	p.FastForward = ancestorErr == nil
	out, err := g.Output(ctx, c.Repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", head, c.Result.Head)
	if err != nil {
		var ge *gitrun.Error
		if !errors.As(err, &ge) {
			return p, err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 { // merge-tree failed for another reason than conflicts
			return p, err
		}
		p.Conflicts = lines[1:]
	}
	p.Stat, _ = g.Output(ctx, c.Repo, "diff", "--shortstat", "--no-ext-diff", "--no-textconv", head, c.Result.Head)
	p.Stat = strings.TrimSpace(p.Stat)
	switch {
	case o.Squash:
		p.How = "squash (one commit of the branch's changes)"
	case p.FastForward && !o.NoFF:
		p.How = "fast-forward"
	default:
		p.How = "merge commit"
	}
	if len(p.Conflicts) > 0 {
		return p, fmt.Errorf("%w in %s: nothing was changed; merge it yourself to resolve them: git merge %s", ErrConflicts, strings.Join(p.Conflicts, ", "), c.Branch)
	}
	if o.DryRun {
		return p, nil
	}
	msg := fmt.Sprintf("Merge session %s (%s)\n\n%s: %s\n", c.Session, c.Branch, Trailer, c.Session)
	switch {
	case o.Squash:
		if _, err := g.Output(ctx, c.Repo, "merge", "--squash", c.Result.Head); err != nil {
			return p, c.mergeFailed(err)
		}
		msg = fmt.Sprintf("Session %s (%s), squashed\n\n%s: %s\n", c.Session, c.Branch, Trailer, c.Session)
		if _, err := g.Output(ctx, c.Repo, "commit", "--quiet", "-m", msg); err != nil {
			return p, fmt.Errorf("the changes are staged, but committing them failed (commit them yourself): %w", err)
		}
	case p.FastForward && !o.NoFF:
		if _, err := g.Output(ctx, c.Repo, "merge", "--ff-only", "--quiet", c.Result.Head); err != nil {
			return p, c.mergeFailed(err)
		}
	default:
		if _, err := g.Output(ctx, c.Repo, "merge", "--no-ff", "--no-edit", "--quiet", "-m", msg, c.Result.Head); err != nil {
			return p, c.mergeFailed(err)
		}
	}
	merged, err := g.Output(ctx, c.Repo, "rev-parse", "HEAD")
	if err != nil {
		return p, err
	}
	c.Merged, c.MergedAt = merged, now.UTC()
	for _, d := range []string{c.Upper(), c.Work(), c.Out()} {
		_ = os.RemoveAll(d) // the branch holds the work now
	}
	return p, c.Save()
}

func (c *Copy) mergeFailed(err error) error {
	var ge *gitrun.Error
	if !errors.As(err, &ge) || !strings.Contains(ge.Stderr, "would be overwritten") {
		return err
	}
	if c.Snapshot != "" {
		return fmt.Errorf("you have uncommitted changes in files the merge changes; the session started from the changes you had then (its first commit, %s): stash them (git stash), merge, then drop or apply the stash: %w", short(c.Snapshot), err)
	}
	return fmt.Errorf("you have uncommitted changes in files the merge changes: commit or stash them (git stash), then merge again: %w", err)
}

// branchUnmoved refuses to act on a branch that no longer points where the session left it
// (the user committed to it, or reused its name).
func (c *Copy) branchUnmoved(ctx context.Context, g gitrun.Git) error {
	got, err := g.Output(ctx, c.Repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+c.Branch)
	if err != nil {
		return fmt.Errorf("branch %s is gone from %s", c.Branch, c.Repo)
	}
	if got != c.Result.Head {
		return fmt.Errorf("branch %s moved since the session (%s, was %s): merge or delete it with git yourself", c.Branch, short(got), short(c.Result.Head))
	}
	return nil
}

// Discard deletes the session's branch (when it is still where the session left it, unless
// force) and its copy. The evidence stays.
func (c *Copy) Discard(ctx context.Context, g gitrun.Git, force, dryRun bool) ([]string, error) {
	var did []string
	if c.Result != nil && c.Result.Changed && c.Merged == "" {
		if err := c.branchUnmoved(ctx, g); err != nil && !force {
			return nil, fmt.Errorf("%w (or discard with --force)", err)
		}
		if exists, _ := BranchExists(ctx, g, c.Repo, c.Branch); exists {
			did = append(did, "delete branch "+c.Branch+" from "+c.Repo)
			if !dryRun {
				if _, err := g.Output(ctx, c.Repo, "branch", "-D", "--quiet", c.Branch); err != nil {
					return did, err
				}
			}
		}
	}
	did = append(did, "remove the copy "+c.Dir)
	if dryRun {
		return did, nil
	}
	return did, c.Remove()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
