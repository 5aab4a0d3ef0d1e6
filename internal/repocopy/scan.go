package repocopy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// Scan is what making a copy reads of the user's repository with git: HEAD, its tree, the
// configuration, the status of the work tree (changes, untracked and ignored paths) and the
// submodules' ignored paths. ReadScan reads it in full; a watcher (internal/repowatch) keeps
// one up to date with ReadChanged and Merge, so that a session reads only what changed.
type Scan struct {
	Head   string `json:"head,omitempty"`
	Branch string `json:"branch,omitempty"` // empty when HEAD is detached
	Tree   string `json:"tree,omitempty"`
	// Config is `git config --file .git/config --list -z` (the copy's own is made from it).
	Config  string  `json:"config,omitempty"`
	Entries []Entry `json:"entries,omitempty"`
	// Gitlinks are the index's submodules; SubIgnored the ignored paths inside them and
	// SubGitDirs their git directories inside their work trees (submodules.go).
	Gitlinks   []string `json:"gitlinks,omitempty"`
	SubIgnored []string `json:"subIgnored,omitempty"`
	SubGitDirs []string `json:"subGitDirs,omitempty"`
}

// Entry is one line of `git status --porcelain=v2`: Kind is 1 (changed), 2 (renamed or
// copied), u (unmerged), ? (untracked) or ! (ignored); XY the index and work tree states
// (changed entries); Path ends with / for a directory; Orig is a rename's original path.
type Entry struct {
	Kind string `json:"kind"`
	XY   string `json:"xy,omitempty"`
	Path string `json:"path"`
	Orig string `json:"orig,omitempty"`
}

// statusArgs read the work tree's state: every change, the untracked directories as one
// entry each, the ignored paths (a directory that is ignored as a whole as one entry); no
// counts against the upstream (a walk of history, for nothing here).
var statusArgs = []string{"status", "--porcelain=v2", "-z", "--no-ahead-behind", "--ignored=traditional", "--untracked-files=normal"}

// ReadingGit is g as a watcher reads the user's repository: the repository's fsmonitor is a
// program sourceosctl has no reason to start, and git must not write the user's index (the
// watcher would see its own refresh as a change). A session's full read lets git refresh the
// index, as the user's own status does: an index whose stat data is stale (a tree copied or
// chowned) makes every later read hash every file again.
func ReadingGit(g gitrun.Git) gitrun.Git {
	return g.WithConfig("core.fsmonitor=false").With("GIT_OPTIONAL_LOCKS=0")
}

// ReadScan reads the repository's scan in full, its parts beside each other (each git
// process costs tens of milliseconds to start here; the status of a large tree, hundreds).
// The repository's fsmonitor is never started; whether the status may refresh the index is
// g's (a watcher's must not: ReadingGit).
func ReadScan(ctx context.Context, g gitrun.Git, repo string) (Scan, error) {
	g = g.WithConfig("core.fsmonitor=false")
	var (
		s      Scan
		wg     sync.WaitGroup
		cfgErr error
		subs   submoduleIgnored
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.Tree, _ = g.Output(ctx, repo, "rev-parse", "--verify", "--quiet", "HEAD^{tree}")
	}()
	go func() {
		defer wg.Done()
		s.Config, cfgErr = g.Output(ctx, repo, "config", "--file", filepath.Join(repo, ".git", "config"), "--list", "-z")
	}()
	go func() { defer wg.Done(); subs = ignoredInSubmodules(ctx, g, repo, "", 0) }()
	raw, err := g.Raw(ctx, repo, append(statusArgs, "--branch")...)
	wg.Wait()
	if err != nil {
		return s, err
	}
	var ge *gitrun.Error
	if cfgErr != nil && !errors.As(cfgErr, &ge) { // an empty or absent config is fine
		return s, cfgErr
	}
	if subs.err != nil {
		return s, subs.err
	}
	s.Head, s.Branch, s.Entries = parseStatus(raw)
	s.Gitlinks, s.SubIgnored, s.SubGitDirs = subs.links, subs.paths, subs.gitDirs
	return s, nil
}

// ReadChanged reads the status of the paths only (relative, slash-separated): a pathspec
// that is a directory reads everything below it.
func ReadChanged(ctx context.Context, g gitrun.Git, repo string, paths []string) ([]Entry, error) {
	args := append(slices.Clone(statusArgs), "--")
	for _, p := range paths {
		args = append(args, ":(literal)"+p)
	}
	raw, err := ReadingGit(g).Raw(ctx, repo, args...)
	if err != nil {
		return nil, err
	}
	_, _, entries := parseStatus(raw)
	return entries, nil
}

// Merge is s with the status of the paths read again (ReadChanged of paths): every entry at
// or below one of the paths is replaced by what the new read says. The paths must not lie
// below a directory entry of s (a watcher widens them to the topmost directory without
// tracked files, which is where git's status shows an untracked or ignored directory).
func (s Scan) Merge(paths []string, read []Entry) Scan {
	kept := make([]Entry, 0, len(s.Entries)+len(read))
	for _, e := range s.Entries {
		if !slices.ContainsFunc(paths, func(p string) bool { return atOrBelow(e.Path, p) || (e.Orig != "" && atOrBelow(e.Orig, p)) }) {
			kept = append(kept, e)
		}
	}
	s.Entries = append(kept, read...)
	slices.SortFunc(s.Entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	s.Entries = slices.CompactFunc(s.Entries, func(a, b Entry) bool { return a == b })
	return s
}

// atOrBelow reports whether the entry path p (a directory's ends with /) is dir or below it.
func atOrBelow(p, dir string) bool {
	p = strings.TrimSuffix(p, "/")
	return dir == "" || dir == "." || p == dir || strings.HasPrefix(p, dir+"/")
}

// Dirty reports whether the work tree or the index differs from HEAD (untracked files count).
func (s Scan) Dirty() bool {
	return slices.ContainsFunc(s.Entries, func(e Entry) bool { return e.Kind != "!" })
}

// Ignored are the ignored paths (directories end with /).
func (s Scan) Ignored() []string { return s.paths("!", false) }

// Untracked are the untracked directories (ending with /).
func (s Scan) Untracked() []string { return s.paths("?", true) }

func (s Scan) paths(kind string, dirsOnly bool) []string {
	var out []string
	for _, e := range s.Entries {
		if e.Kind == kind && (!dirsOnly || strings.HasSuffix(e.Path, "/")) {
			out = append(out, e.Path)
		}
	}
	return out
}

// maxSnapshotPaths bounds the paths a snapshot names; beyond it, it adds the whole tree.
const maxSnapshotPaths = 1000

// worktreeChanges are the paths whose work tree differs from the index (what `git add
// --all` must read to snapshot them: the rest of the index is already what the tree holds),
// or ["."] when there are too many to name.
func (s Scan) worktreeChanges() []string {
	var out []string
	for _, e := range s.Entries {
		switch {
		case e.Kind == "!":
		case (e.Kind == "1" || e.Kind == "2") && len(e.XY) == 2 && e.XY[1] == '.':
			// staged only: the index already holds the change
		default:
			out = append(out, strings.TrimSuffix(e.Path, "/"))
		}
	}
	if len(out) > maxSnapshotPaths {
		return []string{"."}
	}
	return out
}

// parseStatus reads `git status --porcelain=v2 -z [--branch]`.
func parseStatus(raw []byte) (head, branch string, entries []Entry) {
	fields := bytes.Split(raw, []byte{0})
	for i := 0; i < len(fields); i++ {
		line := string(fields[i])
		switch {
		case strings.HasPrefix(line, "# branch.oid "):
			if oid := strings.TrimPrefix(line, "# branch.oid "); oid != "(initial)" {
				head = oid
			}
		case strings.HasPrefix(line, "# branch.head "):
			if b := strings.TrimPrefix(line, "# branch.head "); b != "(detached)" {
				branch = b
			}
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "! ") || strings.HasPrefix(line, "? "):
			entries = append(entries, Entry{Kind: line[:1], Path: line[2:]})
		default:
			// 1 XY sub mH mI mW hH hI path; 2 … Xscore path NUL orig; u XY sub m1 m2 m3 mW h1 h2 h3 path
			n := map[byte]int{'1': 9, '2': 10, 'u': 11}[line[0]]
			parts := strings.SplitN(line, " ", max(n, 1))
			if n == 0 || len(parts) < n {
				entries = append(entries, Entry{Kind: line[:1], Path: line}) // unknown: still a change
				continue
			}
			e := Entry{Kind: parts[0], XY: parts[1], Path: parts[n-1]}
			if e.Kind == "2" && i+1 < len(fields) {
				i++
				e.Orig = string(fields[i])
			}
			entries = append(entries, e)
		}
	}
	return head, branch, entries
}

// branchTaken reports whether the repository at repo has the branch, read without git where
// the refs are files (a loose ref, or a line of packed-refs; a directory there is a
// namespace the branch cannot take either), and with git for any other ref storage.
func branchTaken(ctx context.Context, g gitrun.Git, repo, branch string) (bool, error) {
	gitDir := filepath.Join(repo, ".git")
	if _, err := os.Lstat(filepath.Join(gitDir, "reftable")); err == nil {
		return BranchExists(ctx, g, repo, branch)
	}
	ref := path.Join("refs/heads", branch)
	if _, err := os.Lstat(filepath.Join(gitDir, filepath.FromSlash(ref))); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return false, err
	}
	packed, err := os.ReadFile(filepath.Join(gitDir, "packed-refs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	return bytes.Contains(packed, []byte(" "+ref+"\n")), nil
}
