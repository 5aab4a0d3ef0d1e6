package repocopy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	// AllowHooks merges a branch that changes what the user's git hooks run (see hookPaths).
	AllowHooks bool
}

// MergePlan is what merging would do.
type MergePlan struct {
	Into        string   `json:"into"`        // the user's current branch ("" when detached)
	FastForward bool     `json:"fastForward"` // the branch is ahead of HEAD only
	Conflicts   []string `json:"conflicts"`   // files both sides changed differently
	Stat        string   `json:"stat"`
	How         string   `json:"how"` // fast-forward, merge commit, squash
	// Overwrites are paths the branch adds that the user's work tree has as ignored or
	// untracked files (git would replace an ignored one without a word); Hooks the files
	// the branch changes that the user's git hooks run (a refusal unless AllowHooks).
	Overwrites []string `json:"overwrites,omitempty"`
	Hooks      []string `json:"hooks,omitempty"`
	// OutsideLinks are symbolic links the branch adds or changes that point out of the
	// repository ("name -> target"): merged, they are in your tree; a tool that writes
	// through one writes outside it.
	OutsideLinks []string `json:"outsideLinks,omitempty"`
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
	hookPaths := c.hookPaths(ctx, g)
	// No hook of the user's runs during the merge: the hooks directory may be in the work
	// tree (husky's core.hooksPath), which the merge is about to change.
	g = g.WithConfig("core.hooksPath=" + os.DevNull)
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
	tree, _, _ := strings.Cut(out, "\n") // merge-tree's first line: the merged tree
	if err := c.checkMerge(ctx, g, &p, head, tree, hookPaths, o.AllowHooks); err != nil {
		return p, err
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
	if c.State() == StatePreparing && !force {
		// Its session may still be running (or was killed before its end): the copy may
		// hold the agent's work, which nothing brought back.
		return nil, fmt.Errorf("session %s has not ended, or was interrupted before its work was brought back: its copy (%s) may hold the agent's work; see sourceosctl agent-machine status, then discard with --force", c.Session, c.Dir)
	}
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

// hookManagers are paths of the work tree that hook managers installed in .git/hooks read to
// decide what to run (pre-commit's local hooks run any command; so do husky's scripts and
// configurations, lefthook's, overcommit's, lint-staged's): a branch changing them changes
// what the user's next commit runs. A name ending in / is a directory; names are compared
// without case (a case-insensitive file system takes .HUSKY for .husky).
var hookManagers = []string{".pre-commit-config.yaml", ".husky/", ".githooks/", ".git-hooks/",
	"lefthook.yml", "lefthook.yaml", "lefthook.toml", "lefthook.json", "lefthook.jsonc",
	".lefthook.yml", ".lefthook.yaml", ".lefthook.toml", ".lefthook.json", ".lefthook.jsonc",
	"lefthook-local.yml", "lefthook-local.yaml", "lefthook-local.toml", "lefthook-local.json",
	".lefthook-local.yml", ".lefthook-local.yaml", ".lefthook-local.toml", ".lefthook-local.json",
	".lefthook/", ".lefthook-local/", ".config/lefthook.yml", ".config/lefthook.yaml", ".overcommit.yml",
	".huskyrc", ".huskyrc.json", ".huskyrc.js", ".huskyrc.cjs", ".huskyrc.yaml", ".huskyrc.yml", "husky.config.js", "husky.config.cjs",
	".simple-git-hooks.json", ".simple-git-hooks.js", "simple-git-hooks.json", "simple-git-hooks.js"}

// lintStaged are lint-staged's configuration files, which apply in any directory.
var lintStaged = regexp.MustCompile(`(?i)(^|/)(\.lintstagedrc(\.(json|ya?ml|[cm]?js|ts))?|lint-staged\.config\.([cm]?js|ts))$`)

// hookKeys in a package.json configure hooks (husky 4, lint-staged, simple-git-hooks,
// pre-commit's npm package).
var hookKeys = regexp.MustCompile(`"(husky|lint-staged|simple-git-hooks|pre-commit|pre-push|gitHooks)"\s*:`)

// checkMerge refuses a merge that would replace the user's ignored or untracked files with
// the branch's (git replaces ignored ones without a word: an .env the agent added would take
// the place of the user's), and, unless allowHooks, one that changes what the user's git
// hooks run — files below a core.hooksPath inside the repository (husky's .husky) or a hook
// manager's configuration. tree is the merged tree; hookPaths are hookPaths' answer.
func (c *Copy) checkMerge(ctx context.Context, g gitrun.Git, p *MergePlan, head, tree string, hookPaths []string, allowHooks bool) error {
	raw, err := g.Raw(ctx, c.Repo, "diff", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-ext-diff", "--no-textconv", head, tree)
	if err != nil {
		return err
	}
	// --raw -z: ":OLDMODE NEWMODE OLDID NEWID STATUS" NUL PATH NUL, for each change.
	fields := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		meta, name := strings.Fields(strings.TrimPrefix(fields[i], ":")), fields[i+1]
		if len(meta) != 5 {
			return fmt.Errorf("git diff --raw: unexpected %q", fields[i])
		}
		newMode, oldID, newID, status := meta[1], meta[2], meta[3], meta[4]
		if status == "A" && inWorkTree(c.Repo, name) {
			p.Overwrites = append(p.Overwrites, name)
		}
		if isHookFile(name, hookPaths) || path.Base(name) == "package.json" && c.namesHooks(ctx, g, oldID, newID) {
			p.Hooks = append(p.Hooks, name)
		}
		if newMode == "120000" {
			target, err := g.Output(ctx, c.Repo, "cat-file", "blob", newID)
			if err != nil {
				return err
			}
			if t := path.Clean(path.Join(path.Dir(name), target)); path.IsAbs(target) || t == ".." || strings.HasPrefix(t, "../") {
				p.OutsideLinks = append(p.OutsideLinks, name+" -> "+target)
			}
		}
	}
	if len(p.Overwrites) > 0 {
		started := ""
		if c.Snapshot != "" {
			started = fmt.Sprintf(" (the session started from the untracked files you had then: its first commit, %s, holds them)", short(c.Snapshot))
		}
		return fmt.Errorf("the branch adds %s, which you have in your work tree as files git does not track, ignored or untracked%s: the merge would replace yours; nothing was changed — move them aside, or stash them (git stash --include-untracked, or --all for ignored ones), then merge again", quoteList(p.Overwrites), started)
	}
	if len(p.Hooks) > 0 && !allowHooks {
		return fmt.Errorf("the branch changes what your git hooks run (%s): your next commit would run the agent's code; nothing was changed — review them (sourceosctl agent-machine diff %s), then merge with --allow-hook-changes", quoteList(p.Hooks), c.Session)
	}
	return nil
}

// hookPaths are what the user's git hooks run inside the work tree, relative and
// slash-separated (a name ending in / is a directory): the hooks directory when it is there
// (core.hooksPath, relative to the work tree; husky 9's ".husky/_" names ".husky/" too), and
// each hook that is a symbolic link into the work tree (.git/hooks/pre-commit ->
// ../../tools/pre-commit). A hook script that runs a file of the work tree by name cannot be
// seen from here.
func (c *Copy) hookPaths(ctx context.Context, g gitrun.Git) []string {
	dir := filepath.Join(c.GitDir, "hooks")
	if hp, err := g.Output(ctx, c.Repo, "config", "--path", "--get", "core.hooksPath"); err == nil && hp != "" {
		if hp == os.DevNull {
			return nil
		}
		if !filepath.IsAbs(hp) {
			hp = filepath.Join(c.Repo, hp)
		}
		dir = filepath.Clean(hp)
	}
	var out []string
	for _, rel := range c.linkChain(dir) {
		if rel == "" {
			continue // outside the work tree (.git/hooks)
		}
		out = append(out, rel+"/") // "./" when it is the work tree itself: every file
		if path.Base(rel) == "_" && path.Dir(rel) != "." {
			out = append(out, path.Dir(rel)+"/")
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		for _, rel := range c.linkChain(filepath.Join(dir, e.Name()))[1:] {
			if st, err := os.Stat(filepath.Join(c.Repo, filepath.FromSlash(rel))); err == nil && st.IsDir() {
				rel += "/"
			}
			out = append(out, rel)
		}
	}
	return out
}

// linkChain is p and each name a symbolic link along the way makes it (one hop at a time, up
// to 16), as paths relative to the work tree, slash-separated, for those inside it — every
// link of the chain, and every symbolically linked directory on the way, is a file a branch
// could change to send the hook elsewhere. p's own entry comes first even when outside
// (""), so that callers can skip it.
func (c *Copy) linkChain(p string) []string {
	var out []string
	for hop := 0; hop < 16; hop++ {
		p = filepath.Clean(p)
		rel, ok := c.inRepoLexical(p)
		if hop == 0 || ok {
			if !ok {
				rel = ""
			}
			out = append(out, rel)
		}
		if ok { // the linked directories on the way
			q := c.Repo
			for _, part := range strings.Split(rel, "/") {
				q = filepath.Join(q, part)
				if st, err := os.Lstat(q); err == nil && st.Mode()&fs.ModeSymlink != 0 && q != p {
					r, _ := filepath.Rel(c.Repo, q)
					out = append(out, filepath.ToSlash(r))
				}
			}
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	// The final place, links resolved.
	if real, err := filepath.EvalSymlinks(p); err == nil {
		if rel, ok := c.inRepo(real); ok {
			out = append(out, rel)
		}
	}
	return out
}

// inRepoLexical is p relative to the work tree when p, as written, is inside it and not in
// its .git.
func (c *Copy) inRepoLexical(p string) (string, bool) { return relInside(c.Repo, p) }

// inRepo is p relative to the work tree (slash-separated) when it is inside it and not in
// its .git.
func (c *Copy) inRepo(p string) (string, bool) {
	repo := c.Repo
	if r, err := filepath.EvalSymlinks(repo); err == nil {
		repo = r
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return relInside(repo, p)
}

// relInside is p relative to the work tree repo (slash-separated), when it is inside it and
// not in its .git.
func relInside(repo, p string) (string, bool) {
	rel, err := filepath.Rel(repo, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || rel == ".git" || strings.HasPrefix(rel, ".git/") {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

func isHookFile(name string, hookPaths []string) bool {
	lower := strings.ToLower(name)
	for _, p := range slices.Concat(hookPaths, hookManagers) {
		p = strings.ToLower(p)
		if p == "./" || lower == p || lower == strings.TrimSuffix(p, "/") || strings.HasSuffix(p, "/") && strings.HasPrefix(lower, p) {
			return true
		}
	}
	return lintStaged.MatchString(name)
}

// inWorkTree reports whether the slash-separated path name, or a file (or link) where one of
// its parent directories would go, is in the work tree at repo.
func inWorkTree(repo, name string) bool {
	p := repo
	parts := strings.Split(name, "/")
	for i, part := range parts {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		if err != nil {
			return false
		}
		if i == len(parts)-1 || !st.IsDir() {
			return true
		}
	}
	return false
}

// quoteList names up to five paths, quoted (they are the agent's), and how many more.
func quoteList(names []string) string {
	var q []string
	for i, n := range names {
		if i == 5 {
			q = append(q, fmt.Sprintf("and %d more", len(names)-5))
			break
		}
		q = append(q, strconv.Quote(n))
	}
	return strings.Join(q, ", ")
}

// namesHooks reports whether either version of a package.json (blob ids; a zero id is none)
// configures hooks (hookKeys).
func (c *Copy) namesHooks(ctx context.Context, g gitrun.Git, ids ...string) bool {
	for _, id := range ids {
		if strings.Trim(id, "0") == "" {
			continue
		}
		if b, err := g.Raw(ctx, c.Repo, "cat-file", "blob", id); err == nil && hookKeys.Match(b) {
			return true
		}
	}
	return false
}
