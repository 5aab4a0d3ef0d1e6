package agentmachine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// gitGuardDepth is how deep below a writable directory git metadata is looked for: mounted
// read-only before the session, and compared after it.
const gitGuardDepth = 3

// scanGit walks the writable roots once (to gitGuardDepth, into repositories' work trees,
// never into a .git, following each repository's submodules — the index's gitlinks, entered
// only through plain directories — at any depth) for two things. readOnly are, per root, the
// entries the session must see read-only, relative and slash-separated: each .git (a
// directory, or a file naming one; a mount of ~/code holds many, nested or not) and each
// bare repository below the root. guard is what the session's end is compared with
// (checkGitAfter).
func scanGit(f Facts, roots []string) (readOnly map[string][]string, guard gitGuard) {
	readOnly, guard = map[string][]string{}, gitGuard{}
	for _, root := range roots {
		var out []string
		var repo func(dir string)
		repo = func(dir string) {
			st, err := os.Lstat(filepath.Join(dir, ".git"))
			if err != nil {
				return
			}
			guard[filepath.Join(dir, ".git")] = identity(st)
			if !st.IsDir() && !st.Mode().IsRegular() {
				return
			}
			rel, _ := filepath.Rel(root, dir)
			out = append(out, path.Join(filepath.ToSlash(rel), ".git"))
			if f.Gitlinks == nil {
				return
			}
			for _, link := range f.Gitlinks(dir) {
				if repocopy.PlainDirectory(dir, link) {
					repo(filepath.Join(dir, filepath.FromSlash(link)))
				}
			}
		}
		eachLevel(root, func(dir string) {
			repo(dir)
			if !repocopy.IsGitDir(dir) {
				return
			}
			// A bare repository (or a git directory) below: its hooks and configuration too.
			if st, err := os.Lstat(filepath.Join(dir, "HEAD")); err == nil {
				guard[filepath.Join(dir, "HEAD")] = identity(st)
			}
			if rel, _ := filepath.Rel(root, dir); rel != "." {
				out = append(out, filepath.ToSlash(rel))
			}
		}, func(dir string) { guard[dir] = unreadableDir })
		sort.Strings(out)
		readOnly[root] = slices.Compact(out)
	}
	return readOnly, guard
}

// eachLevel calls visit for root and each directory below it to gitGuardDepth, never
// entering a .git (nor following a symbolic link); unreadable, if set, for each directory
// within those levels that cannot be listed.
func eachLevel(root string, visit func(dir string), unreadable func(dir string)) {
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		visit(dir)
		if depth >= gitGuardDepth {
			return
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			if unreadable != nil && !errors.Is(err, fs.ErrNotExist) {
				unreadable(dir)
			}
			return
		}
		for _, e := range entries {
			if e.IsDir() && e.Name() != ".git" {
				walk(filepath.Join(dir, e.Name()), depth+1)
			}
		}
	}
	walk(root, 0)
}

// gitGuard is what git would find in the session's writable directories: each .git and
// each directory laid out as a git directory (HEAD, objects, refs), to gitGuardDepth, by host
// path, with the file it is (identity). Taken before the session and compared after it.
type gitGuard map[string]string

// writableRoots are the host directories the session can write and git could be run in
// later: a direct workspace, and the profile's writable mounts.
func writableRoots(pl *Plan) []string {
	var roots []string
	for _, m := range pl.Decision.Mounts {
		if m.ReadOnly || m.Source == "" || !m.Allowed {
			continue
		}
		if m.Role == policy.RoleWorkspace && pl.Workspace.Mode != WorkspaceDirect {
			continue // a copy's overlay, or a volume: not the user's directory
		}
		roots = append(roots, m.Source)
	}
	return roots
}

// unreadableDir marks a directory of the guard's levels that could not be listed.
const unreadableDir = "unreadable"

// identity is a file's kind and identity (fileIdentity): a directory moved is the same one; a
// file put where a directory was is not.
func identity(st fs.FileInfo) string {
	return st.Mode().Type().String() + fileIdentity(st)
}

// checkGitAfter compares the writable directories with what they held before the session:
// a .git that is new, or is another file than before, or a new git directory's HEAD, may be
// the session's — the user's next git command there would read its configuration and hooks —
// and is moved aside to NAME.from-session-<id>-<random> (a name the session cannot take
// first); for a workspace (moveAside false), whose directory the user works in too, it is
// named instead. A .git of the user's that the session moved elsewhere (by renaming a
// directory above it: same name, same file) is named, to be moved back; a directory that can
// no longer be listed is named. It returns what it said.
func (r *sessionRun) checkGitAfter(before gitGuard, roots []string, moveAside bool) []string {
	if len(roots) == 0 {
		return nil
	}
	_, after := scanGit(Facts{}, roots) // the levels only: submodules' .git were read-only
	moved := map[string]string{}        // identity → where it was
	for p, id := range before {
		if strings.Contains(id, ":") { // a device:inode, where the system gives one
			moved[id] = p
		}
	}
	var did []string
	keys := make([]string, 0, len(after))
	for p := range after {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		id := after[p]
		was, existed := before[p]
		switch {
		case existed && was == id:
			continue
		case id == unreadableDir:
			did = append(did, fmt.Sprintf("%s cannot be listed after the session: look below it before you run git there", p))
			continue
		case existed && filepath.Base(p) == "HEAD":
			continue // a git directory of the user's, read-only to the session: git rewrote its HEAD
		}
		if from, ok := moved[id]; ok && from != p && filepath.Base(from) == filepath.Base(p) {
			did = append(did, fmt.Sprintf("your %s is now at %s (the session moved a directory above it): move it back", from, p))
			continue
		}
		if !moveAside { // a workspace, whose directory the user works in too: said, not moved
			did = append(did, fmt.Sprintf("%s is new or replaced since the workspace came up (it could write there): look at it before you run git there", p))
			continue
		}
		aside := p + ".from-session-" + r.plan.SessionID + "-" + randomSuffix()
		if err := os.Rename(p, aside); err != nil {
			did = append(did, fmt.Sprintf("%s was not there as it is now when the session started, and could not be moved aside (%v): do not run git there before you have looked at it", p, err))
			continue
		}
		did = append(did, fmt.Sprintf("%s was not there as it is now when the session started: moved aside to %s, so that your git does not run what the session may have put in it — look at it, then move it back if it is yours", p, aside))
	}
	for _, d := range did {
		r.event("%s", d)
		fmt.Fprintf(r.IO.ErrOut, "! %s\n", d)
	}
	return did
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// gitGuardWarning is the plan's warning for a writable directory: what the session could
// still leave there that git would act on.
func gitGuardWarning(dir string) string {
	return fmt.Sprintf("%s is writable by the session: the .git of each repository in it, to %d levels (and their submodules'), is mounted read-only, and one the session makes or replaces there is moved aside afterwards — but not deeper than that: look before you run git in a deeper directory the session wrote", strings.TrimSuffix(dir, "/"), gitGuardDepth)
}
