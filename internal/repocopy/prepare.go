package repocopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// IsRepository reports whether dir is the top level of a git work tree with its own .git
// directory — what a copy needs (a linked worktree's or submodule's .git file points to
// objects outside it).
func IsRepository(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, ".git"))
	return err == nil && st.IsDir()
}

// IsLinkedWorkTree reports whether dir's .git is a file (a linked worktree's or a
// submodule's): it names where git finds the repository.
func IsLinkedWorkTree(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, ".git"))
	return err == nil && st.Mode().IsRegular()
}

// IsGitDir reports whether dir is itself a git directory — a bare repository, or a work
// tree's .git — by what git looks for: a HEAD file, objects and refs directories.
func IsGitDir(dir string) bool {
	head, err := os.Lstat(filepath.Join(dir, "HEAD"))
	if err != nil || !head.Mode().IsRegular() {
		return false
	}
	for _, d := range []string{"objects", "refs"} {
		if st, err := os.Lstat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// Prepare makes the copy: the snapshot of uncommitted changes, the whiteouts over ignored
// paths, and the copy's own .git state in the upper layer (HEAD on the session's branch, a
// configuration without credentials or programs). git runs in the user's repository only,
// as its owner. include are ignored paths (relative, slash-separated) the session sees.
// scan is the repository as a watcher last read it, kept up to date (nil: read it in full
// now). It returns the repository's state as found, for the evidence.
func Prepare(ctx context.Context, g gitrun.Git, c *Copy, include []string, scan *Scan, now time.Time) (fingerprint.GitState, error) {
	st := fingerprint.GitState{Reader: "git"}
	c.Created = now.UTC()
	owner, err := ownerOf(c.Repo)
	if err != nil {
		return st, err
	}
	g = g.WithConfig("core.fsmonitor=false") // the user's program; the index may be refreshed (ReadScan)
	var (
		wg       sync.WaitGroup
		taken    bool
		takenErr error
	)
	wg.Add(1)
	go func() { defer wg.Done(); taken, takenErr = branchTaken(ctx, g, c.Repo, c.Branch) }()
	if scan == nil {
		read, err := ReadScan(ctx, g, c.Repo)
		if err != nil {
			wg.Wait()
			return st, fmt.Errorf("read the repository's state: %w", err)
		}
		scan = &read
	}
	wg.Wait()
	if takenErr != nil || taken {
		if takenErr == nil {
			takenErr = fmt.Errorf("branch %s %w", c.Branch, ErrBranchExists)
		}
		return st, takenErr
	}
	s := *scan
	dirty := s.Dirty()
	st.Commit, st.Branch, st.Dirty, st.Tree = s.Head, s.Branch, dirty, s.Tree
	if s.Head == "" {
		return st, fmt.Errorf("%s has no commit yet: commit something first (a session's branch starts from a commit)", c.Repo)
	}
	c.Head, c.Base = s.Head, s.Head
	for _, d := range []string{c.Upper(), c.Work(), c.Out()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return st, err
		}
	}
	up := upperWriter{upper: c.Upper(), lower: c.Repo, owner: owner}
	if err := up.mirrorDir("."); err != nil {
		return st, err
	}
	if err := lchown(c.Out(), owner); err != nil {
		return st, err
	}
	nested, err := nestedRepositories(c.Repo, s.Untracked())
	if err != nil {
		return st, err
	}
	if dirty {
		// A repository of its own that the copy hides is not the user's change either (git
		// add would record it as an embedded repository's commit).
		var hidden []string
		for _, n := range nested {
			if !includes(include, n) {
				hidden = append(hidden, n)
			}
		}
		if err := c.snapshot(ctx, g, up, s.worktreeChanges(), hidden, s.Tree, now); err != nil {
			return st, err
		}
	}
	for _, p := range slices.Concat(s.Ignored(), nested, s.SubIgnored) {
		if includes(include, p) {
			c.Included = append(c.Included, p)
			continue
		}
		if err := up.whiteout(p); err != nil {
			return st, fmt.Errorf("hide %s: %w", p, err)
		}
		c.Masked = append(c.Masked, p)
	}
	if err := hideGitBookkeeping(up, c.GitDir, ".git"); err != nil {
		return st, fmt.Errorf("hide the repository's own records: %w", err)
	}
	if err := c.shadowSubmoduleConfigs(up); err != nil {
		return st, fmt.Errorf("shadow the submodules' configurations: %w", err)
	}
	for _, d := range s.SubGitDirs {
		if err := c.shadowGitDir(up, d); err != nil {
			return st, fmt.Errorf("shadow the configuration of %s: %w", d, err)
		}
	}
	if err := c.writeGitState(up, s.Config); err != nil {
		return st, err
	}
	return st, c.Save()
}

// gitKeep are the entries of a git directory the copy shows the session: what git needs to
// read history and work (objects, refs, the format and ignore rules, a shallow clone's list,
// submodules' and LFS's stores); the copy's own HEAD, index and config replace the user's.
// Everything else is the user's own record and hidden: reflogs (URLs with tokens from a pull),
// hooks (the user's programs), config.worktree and files the config includes (settings and
// headers), linked worktrees' state, the last commit message, FETCH_HEAD, a rebase in progress.
var gitKeep = map[string]bool{"HEAD": true, "config": true, "index": true, "objects": true, "refs": true,
	"packed-refs": true, "info": true, "shallow": true, "modules": true, "lfs": true, "reftable": true}

// keptInGitDir reports whether the git directory's entry name is one the copy shows: gitKeep,
// and a split index's shared parts (sharedindex.<id>), which the index names.
func keptInGitDir(name string) bool {
	return gitKeep[name] || strings.HasPrefix(name, "sharedindex.")
}

// hideGitBookkeeping whites out, in the upper layer, the entries of the git directory
// gitDir (at rel in the copy) that gitKeep does not name, and its stash: a stash made with
// --include-untracked or --all holds untracked and ignored files. (The objects stay readable
// by id: the copy hides names, not the object store — see README.)
func hideGitBookkeeping(up upperWriter, gitDir, rel string) error {
	entries, err := os.ReadDir(gitDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keptInGitDir(e.Name()) {
			if err := up.whiteout(path.Join(rel, e.Name())); err != nil {
				return err
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(gitDir, "refs", "stash")); err == nil {
		if err := up.whiteout(path.Join(rel, "refs", "stash")); err != nil {
			return err
		}
	}
	// git gc (pack-refs --all) moves the stash into packed-refs: the copy's has it left out.
	raw, err := os.ReadFile(filepath.Join(gitDir, "packed-refs"))
	if err != nil || !bytes.Contains(raw, []byte(" refs/stash\n")) {
		return nil
	}
	return up.writeFile(path.Join(rel, "packed-refs"), withoutStash(raw), 0o644)
}

// withoutStash is a packed-refs file without refs/stash (and its peeled line).
func withoutStash(raw []byte) []byte {
	var kept []string
	lines := strings.SplitAfter(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.HasSuffix(lines[i], " refs/stash\n") {
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "^") {
				i++ // its peeled line
			}
			continue
		}
		kept = append(kept, lines[i])
	}
	return []byte(strings.Join(kept, ""))
}

// snapshot commits the user's uncommitted changes — tracked and untracked, not ignored, not
// the paths exclude — from a copy of their index, adding the paths changed (the status's
// work tree changes: the rest of the index already is what the tree holds), without touching their work tree, index
// or refs; the copy's index is the result, so the session finds a clean work tree on its
// branch. No commit is made when the result is HEAD's tree (headTree).
func (c *Copy) snapshot(ctx context.Context, g gitrun.Git, up upperWriter, changed, exclude []string, headTree string, now time.Time) error {
	// git runs as the repository's owner: its scratch index lives where they can write.
	scratch, err := ownedTempDir(up.owner)
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	index := filepath.Join(scratch, "index")
	if b, err := os.ReadFile(filepath.Join(c.GitDir, "index")); err == nil {
		if err := os.WriteFile(index, b, 0o600); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := lchown(index, up.owner); err != nil {
		return err
	}
	withIndex := g.With("GIT_INDEX_FILE=" + index)
	pathspec := []string{"add", "--all", "--"}
	for _, p := range changed {
		if p == "." {
			pathspec = append(pathspec, ".")
		} else {
			pathspec = append(pathspec, ":(literal)"+p)
		}
	}
	for _, x := range exclude {
		pathspec = append(pathspec, ":(exclude,literal)"+strings.TrimSuffix(x, "/"))
	}
	if len(changed) > 0 { // none: only staged changes, which the index copy already holds
		if _, err := withIndex.Output(ctx, c.Repo, pathspec...); err != nil {
			return fmt.Errorf("snapshot uncommitted changes: %w", err)
		}
	}
	tree, err := withIndex.Output(ctx, c.Repo, "write-tree")
	if err != nil {
		return fmt.Errorf("snapshot uncommitted changes: %w", err)
	}
	// The result's tree may be HEAD's (nothing but what the copy hides, or a change staged
	// and then undone): then no commit is made, but the index is still the copy's own — the
	// user's could stage what the work tree no longer holds.
	if tree != headTree {
		msg := fmt.Sprintf("sourceosctl: uncommitted changes at the start of session %s\n\n%s: %s\n", c.Session, Trailer, c.Session)
		commit, err := sourceosctlIdentity(g, now).Output(ctx, c.Repo, "commit-tree", tree, "-p", c.Head, "-m", msg)
		if err != nil {
			return fmt.Errorf("snapshot uncommitted changes: %w", err)
		}
		c.Snapshot, c.Base = commit, commit
	}
	b, err := os.ReadFile(index)
	if err != nil {
		return err
	}
	return up.writeFile(".git/index", b, 0o644)
}

// ownedTempDir is a new private temporary directory that o can write (git, run as the
// repository's owner, cannot enter root's state directory).
func ownedTempDir(o owner) (string, error) {
	dir, err := os.MkdirTemp("", "sourceosctl-copy-")
	if err != nil {
		return "", err
	}
	if err := lchown(dir, o); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// sourceosctlIdentity is git with sourceosctl as the author and committer of the commits it
// makes, at now.
func sourceosctlIdentity(g gitrun.Git, now time.Time) gitrun.Git {
	date := now.UTC().Format(time.RFC3339)
	return g.With("GIT_AUTHOR_NAME=sourceosctl", "GIT_AUTHOR_EMAIL=sourceosctl@localhost", "GIT_AUTHOR_DATE="+date,
		"GIT_COMMITTER_NAME=sourceosctl", "GIT_COMMITTER_EMAIL=sourceosctl@localhost", "GIT_COMMITTER_DATE="+date)
}

// writeGitState puts the copy's own .git state in the upper layer: HEAD on the session's
// branch at Base, and a configuration of its own — the repository's format and remotes
// (without credentials), an identity for the agent's commits, and nothing that names a
// program or another file.
func (c *Copy) writeGitState(up upperWriter, cfg string) error {
	if err := up.writeFile(".git/HEAD", []byte("ref: refs/heads/"+c.Branch+"\n"), 0o644); err != nil {
		return err
	}
	if err := up.writeFile(path.Join(".git/refs/heads", c.Branch), []byte(c.Base+"\n"), 0o644); err != nil {
		return err
	}
	return up.writeFile(".git/config", []byte(copyConfig(cfg, c.Session)), 0o644)
}

// copyConfig is the copy's .git/config from the repository's (`git config --list -z`
// output): core's format settings, extensions, and remotes' URLs without credentials and
// their fetch specs. Everything else — hooks, fsmonitor, filters, credential helpers,
// includes, aliases, http headers — is left out.
func copyConfig(list, session string) string {
	var b strings.Builder
	b.WriteString("# The copy's configuration, written by sourceosctl for session " + session + ".\n")
	version := "0"
	var rest strings.Builder
	remotes := map[string][]string{}
	var names []string
	for _, entry := range strings.Split(list, "\x00") {
		key, value, _ := strings.Cut(entry, "\n")
		switch {
		case key == "core.repositoryformatversion" && (value == "0" || value == "1"):
			version = value // one value: git refuses a configuration that names it twice
		case strings.HasPrefix(key, "extensions.") && safeValue(value) && key != "extensions.worktreeconfig":
			rest.WriteString("[extensions]\n\t" + strings.TrimPrefix(key, "extensions.") + " = " + value + "\n")
		case strings.HasPrefix(key, "remote.") && (strings.HasSuffix(key, ".url") || strings.HasSuffix(key, ".fetch")):
			name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(key, "remote."), ".url"), ".fetch")
			if !safeValue(name) || strings.ContainsAny(name, `"\`) {
				continue
			}
			if _, seen := remotes[name]; !seen {
				names = append(names, name)
			}
			if strings.HasSuffix(key, ".url") {
				value = fingerprint.StripCredentials(value)
				if strings.HasPrefix(value, "ext::") || strings.HasPrefix(value, "fd::") {
					continue // transports that run programs
				}
				remotes[name] = append(remotes[name], "\turl = "+value)
			} else if safeValue(value) {
				remotes[name] = append(remotes[name], "\tfetch = "+value)
			}
		}
	}
	b.WriteString("[core]\n\trepositoryformatversion = " + version + "\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n")
	b.WriteString(rest.String())
	for _, name := range names {
		if lines := remotes[name]; len(lines) > 0 {
			b.WriteString("[remote \"" + name + "\"]\n" + strings.Join(lines, "\n") + "\n")
		}
	}
	b.WriteString("[user]\n\tname = agent (sourceosctl session " + session + ")\n\temail = agent@sourceos.invalid\n")
	return b.String()
}

// safeValue is a configuration value that cannot break out of its line.
func safeValue(v string) bool { return !strings.ContainsAny(v, "\n\r\x00") }

// includes reports whether the ignored path p is one the profile carries into the copy:
// p is an included path or below one (a directory entry ends with /).
func includes(include []string, p string) bool {
	p = strings.TrimSuffix(p, "/")
	for _, inc := range include {
		inc = strings.Trim(inc, "/")
		if p == inc || strings.HasPrefix(p, inc+"/") {
			return true
		}
	}
	return false
}

// upperWriter writes into the upper layer with the owner and the directory attributes the
// merged view must show: a directory created in the upper layer replaces the attributes of
// the lower one it merges with.
type upperWriter struct {
	upper, lower string
	owner        owner
}

// mirrorDir creates rel (slash-separated) and its parents in the upper layer with the
// modes and owners of the lower layer's directories (or of the repository's top level, for
// one that is only in the copy, such as .git/refs/heads/agent).
func (u upperWriter) mirrorDir(rel string) error {
	rel = path.Clean(rel)
	if rel != "." {
		if err := u.mirrorDir(path.Dir(rel)); err != nil {
			return err
		}
	}
	dst := filepath.Join(u.upper, filepath.FromSlash(rel))
	if st, err := os.Lstat(dst); err == nil && st.IsDir() {
		return nil
	}
	mode, own := fs.FileMode(0o755), u.owner
	if st, err := os.Lstat(filepath.Join(u.lower, filepath.FromSlash(rel))); err == nil && st.IsDir() {
		mode, own = st.Mode().Perm(), ownerFromInfo(st, u.owner)
	}
	if rel == "." {
		if err := os.Chmod(dst, mode); err != nil {
			return err
		}
		return lchown(dst, own)
	}
	if err := os.Mkdir(dst, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Chmod(dst, mode); err != nil { // Mkdir's mode passes through the umask
		return err
	}
	return lchown(dst, own)
}

func (u upperWriter) writeFile(rel string, data []byte, mode fs.FileMode) error {
	if err := u.mirrorDir(path.Dir(rel)); err != nil {
		return err
	}
	dst := filepath.Join(u.upper, filepath.FromSlash(rel))
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return lchown(dst, u.owner)
}

// whiteout hides rel (a file, or a directory when it ends with /) from the merged view.
func (u upperWriter) whiteout(rel string) error {
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" || rel == "." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
		return fmt.Errorf("%q is not a path inside the repository", rel)
	}
	if err := u.mirrorDir(path.Dir(rel)); err != nil {
		return err
	}
	return mkWhiteout(filepath.Join(u.upper, filepath.FromSlash(rel)))
}
