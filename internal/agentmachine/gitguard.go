package agentmachine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

// gitMetadata are the .git entries (directories, or files naming one) below a writable
// directory that the session must see read-only, relative and slash-separated: the
// directory's own, those of repositories inside it down to gitGuardDepth (nested in one
// another or not: a mount of ~/code holding many), and each repository's submodules (the
// index's gitlinks, entered only through plain directories, at any depth).
func gitMetadata(f Facts, root string) []string {
	var out []string
	var repo func(dir string)
	repo = func(dir string) {
		st, err := os.Lstat(filepath.Join(dir, ".git"))
		if err != nil || !st.IsDir() && !st.Mode().IsRegular() {
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
	eachLevel(root, repo)
	sort.Strings(out)
	return slices.Compact(out)
}

// eachLevel calls visit for root and each directory below it to gitGuardDepth, never
// entering a .git.
func eachLevel(root string, visit func(dir string)) {
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		visit(dir)
		if depth >= gitGuardDepth {
			return
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
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

// takeGitGuard walks the roots to gitGuardDepth (into repositories' work trees, never into
// a .git).
func takeGitGuard(roots []string) gitGuard {
	g := gitGuard{}
	for _, root := range roots {
		eachLevel(root, func(dir string) {
			if st, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
				g[filepath.Join(dir, ".git")] = fileIdentity(st)
			}
			if repocopy.IsGitDir(dir) {
				if st, err := os.Lstat(filepath.Join(dir, "HEAD")); err == nil {
					g[filepath.Join(dir, "HEAD")] = fileIdentity(st)
				}
			}
		})
	}
	return g
}

// checkGitAfter compares the writable directories with what they held before the session:
// a .git (or a git directory's HEAD) that is new, or is another file than before, is the
// session's — the user's next git command there would read its configuration and hooks,
// which the session chose — and is moved aside to NAME.from-session-<id>-<random> (a name
// the session cannot take first); one of the user's that the session moved elsewhere (by
// renaming a directory above it) is named, to be moved back. It returns what it did.
func (r *sessionRun) checkGitAfter(before gitGuard, roots []string) []string {
	if len(roots) == 0 {
		return nil
	}
	after := takeGitGuard(roots)
	moved := map[string]string{} // identity → where it was
	for p, id := range before {
		if id != "" {
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
		if was, ok := before[p]; ok && was == id {
			continue
		}
		if from, ok := moved[id]; ok && id != "" && from != p {
			did = append(did, fmt.Sprintf("your %s is now at %s (the session moved a directory above it): move it back", from, p))
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
