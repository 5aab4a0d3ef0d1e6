package repocopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/safeopen"
)

// Changed reports whether the session left anything in its copy: a path outside .git, or a
// branch, HEAD or packed refs of its own. It reads the upper layer's names only (never
// following a link, never running anything), so an untouched copy of a 50,000-file
// repository costs a few directory reads. The copy's index and new unreferenced objects
// do not count: git rewrites the index on every status.
func (c *Copy) Changed() (bool, error) {
	masked := map[string]bool{}
	for _, m := range c.Masked {
		masked[strings.TrimSuffix(m, "/")] = true
	}
	ours := map[string]string{".git/HEAD": "ref: refs/heads/" + c.Branch + "\n", path.Join(".git/refs/heads", c.Branch): c.Base + "\n"}
	changed := false
	upper := c.Upper()
	err := filepath.WalkDir(upper, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "." || rel == ".git" || rel == ".git/refs" || rel == ".git/refs/heads":
			return nil
		case rel == ".git/index" || rel == ".git/config" || strings.HasPrefix(rel, ".git/objects") || strings.HasPrefix(rel, ".git/logs"):
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		case (masked[rel] || rel == ".git/refs/stash") && e.Type()&fs.ModeCharDevice != 0:
			return nil // our whiteout, still there (the stash's: hideGitBookkeeping)
		case e.IsDir() && (strings.HasPrefix(path.Join(".git/refs/heads", c.Branch), rel+"/") || isMaskedParent(masked, rel)):
			return nil // a directory we made
		}
		if want, ok := ours[rel]; ok {
			if b, err := os.ReadFile(p); err == nil && string(b) == want {
				return nil
			}
		}
		if rel == ".git/packed-refs" { // ours when it is the user's without the stash
			mine, err1 := os.ReadFile(p)
			theirs, err2 := os.ReadFile(filepath.Join(c.GitDir, "packed-refs"))
			if err1 == nil && err2 == nil && bytes.Equal(mine, withoutStash(theirs)) {
				return nil
			}
		}
		if strings.HasPrefix(rel, ".git/") && !strings.HasPrefix(rel, ".git/refs/") && rel != ".git/HEAD" && rel != ".git/packed-refs" {
			if e.IsDir() {
				return fs.SkipDir // git's own bookkeeping (ORIG_HEAD, COMMIT_EDITMSG, hooks …) is not work
			}
			return nil
		}
		changed = true
		return fs.SkipAll
	})
	return changed, err
}

// isMaskedParent reports whether dir is a parent directory of a masked path (made to hold
// its whiteout).
func isMaskedParent(masked map[string]bool, dir string) bool {
	for m := range masked {
		if strings.HasPrefix(m, dir+"/") {
			return true
		}
	}
	return false
}

// Manifest is what the collector writes beside the bundle (internal/collect).
type Manifest struct {
	Head     string   `json:"head"`
	Commits  []string `json:"commits"`
	Leftover string   `json:"leftover,omitempty"`
}

// BundleFile and ManifestFile are the collector's output, in the copy's out directory.
const (
	BundleFile   = "agent.bundle"
	ManifestFile = "manifest.json"
)

// strictFsck are the checks git's fsck only warns about by default that a session's branch
// must pass: tree entries named ".", "..", ".git" (in any case or NTFS/HFS spelling) or a
// full path, bad or zero-padded modes, and links named .gitattributes, .gitignore or .mailmap
// (a .gitmodules link is already an error). git never checks such entries out, but the user's
// repository should not hold them at all.
var strictFsck = []string{"hasDot", "hasDotdot", "hasDotgit", "fullPathname", "emptyName", "badFilemode",
	"zeroPaddedFilemode", "gitattributesSymlink", "gitignoreSymlink", "mailmapSymlink"}

var hexID = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// Import brings the collector's bundle into the user's repository as the session's branch —
// through a quarantine repository and git's pack protocol, every object checked — and reads
// the result: the commits, the patch and its stat. It runs git only in the user's repository
// and in the quarantine it made, as the repository's owner.
// The returned patch is `git diff Base Head` (binary-safe, no external diff or textconv).
func (c *Copy) Import(ctx context.Context, g gitrun.Git, m Manifest) (patch []byte, err error) {
	if !hexID.MatchString(m.Head) {
		return nil, fmt.Errorf("the collector named no valid head commit (%q)", m.Head)
	}
	owner, err := ownerOf(c.Repo)
	if err != nil {
		return nil, err
	}
	// git runs as the repository's owner, who may not enter sourceosctl's state directory.
	scratch, err := ownedTempDir(owner)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	bundle := filepath.Join(scratch, BundleFile)
	if err := copyFile(filepath.Join(c.Out(), BundleFile), bundle, owner); err != nil {
		return nil, fmt.Errorf("read the collector's bundle: %w", err)
	}
	ref := "refs/heads/" + c.Branch
	dst, force, err := c.destination(ctx, g)
	if err != nil {
		return nil, err
	}
	refspec := ref + ":refs/heads/" + dst
	if force {
		refspec = "+" + refspec
	}
	// What an earlier down of the same workspace brought is in the repository already.
	known := []string{c.Base}
	if c.Rewrite && c.Result != nil && hexID.MatchString(c.Result.Head) {
		known = append(known, c.Result.Head)
	}
	// What the user's branches, tags and remotes hold is not a secret the object store
	// gives away: an agent may merge or rebase on main.
	tips, err := g.Output(ctx, c.Repo, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags", "refs/remotes")
	if err != nil {
		return nil, fmt.Errorf("list the repository's refs: %w", err)
	}
	known = append(known, strings.Fields(tips)...)
	check := func(quarantine string) error {
		// What is fetched is the bundle's ref: it must be the head the manifest names.
		if got, err := g.Output(ctx, quarantine, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil || got != m.Head {
			return fmt.Errorf("the collector's bundle holds %s at %q, not the head its manifest names (%s)", ref, got, m.Head)
		}
		return c.checkIncoming(ctx, g, quarantine, m.Head, known)
	}
	if err := fetchChecked(ctx, g, "the session's branch", scratch, bundle, filepath.Join(c.GitDir, "objects"), []string{ref + ":" + ref}, c.Repo, []string{refspec}, check); err != nil {
		return nil, err
	}
	c.Branch = dst
	got, err := g.Output(ctx, c.Repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+dst+"^{commit}")
	if err != nil || got != m.Head {
		return nil, fmt.Errorf("the branch %s is at %q after the fetch, want %s", c.Branch, got, m.Head)
	}
	commits, err := g.Output(ctx, c.Repo, "rev-list", "--reverse", c.Base+".."+m.Head)
	if err != nil {
		return nil, err
	}
	stat, err := g.Output(ctx, c.Repo, "diff", "--shortstat", "--no-ext-diff", "--no-textconv", c.Base, m.Head)
	if err != nil {
		return nil, err
	}
	patch, err = g.Raw(ctx, c.Repo, "diff", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", c.Base, m.Head)
	if err != nil {
		return nil, err
	}
	c.Result = &Result{Changed: true, Head: m.Head, Commits: strings.Fields(commits), Leftover: m.Leftover, Stat: strings.TrimSpace(stat), Kept: c.moved}
	if c.Rewrite {
		c.Result.Origin = c.origin
	}
	return patch, c.Save()
}

// fetchChecked brings refs of a bundle that came from a container into repo, every object
// checked. git (2.39 at least) does not check the objects of a bundle it fetches, whatever
// fetch.fsckObjects says. So the bundle is unpacked into a quarantine repository in scratch
// first — empty but for alternates (repo's objects, so that commits' parents resolve) — and
// repo fetches from it over git's pack protocol, where every received object is checked
// (index-pack --strict, with the checks in strictFsck made errors). git runs only in repo and
// in the quarantine, as repo's owner; scratch must be writable by that owner.
func fetchChecked(ctx context.Context, g gitrun.Git, what, scratch, bundle, alternates string, unpack []string, repo string, refspecs []string, check func(quarantine string) error, flags ...string) error {
	owner, err := ownerOf(repo)
	if err != nil {
		return err
	}
	quarantine := filepath.Join(scratch, "incoming.git")
	if _, err := g.Output(ctx, scratch, "init", "--quiet", "--bare", quarantine); err != nil {
		return fmt.Errorf("make the quarantine: %w", err)
	}
	if alternates != "" {
		file := filepath.Join(quarantine, "objects", "info", "alternates")
		if err := os.WriteFile(file, []byte(alternates+"\n"), 0o644); err != nil {
			return err
		}
		if err := lchown(file, owner); err != nil {
			return err
		}
	}
	if _, err := g.Output(ctx, quarantine, append([]string{"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", bundle}, unpack...)...); err != nil {
		return fmt.Errorf("unpack the bundle of %s: %w", what, err)
	}
	if check != nil {
		if err := check(quarantine); err != nil {
			return err
		}
	}
	args := []string{"-c", "transfer.fsckObjects=true", "-c", "fetch.fsckObjects=true"}
	for _, id := range strictFsck {
		args = append(args, "-c", "fetch.fsck."+id+"=error")
	}
	args = append(append(args, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"), flags...)
	args = append(args, quarantine)
	if _, err := g.Output(ctx, repo, append(args, refspecs...)...); err != nil {
		var ge *gitrun.Error
		if errors.As(err, &ge) && ge.Stderr != "" {
			return fmt.Errorf("git refused %s (every object is checked on its way into %s): %s", what, repo, ge.Stderr)
		}
		return fmt.Errorf("bring %s into %s: %w", what, repo, err)
	}
	return nil
}

// destination is the branch the work is fetched into, and whether it may replace what is
// there. A session's is its own branch (new: never forced). A workspace's (Rewrite) is
// replaced at each down — unless it moved since the last down brought it (a commit of the
// user's on it): then it is kept, and the work goes to the first free BRANCH-N instead.
func (c *Copy) destination(ctx context.Context, g gitrun.Git) (string, bool, error) {
	if !c.Rewrite {
		return c.Branch, false, nil
	}
	tip := func(branch string) string {
		out, err := g.Output(ctx, c.Repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch+"^{commit}")
		if err != nil {
			return ""
		}
		return out
	}
	base := c.Branch
	if c.Result != nil && c.Result.Origin != "" {
		base = c.Result.Origin
	}
	c.origin = base
	at := tip(c.Branch)
	if at == "" || c.Result != nil && at == c.Result.Head {
		return c.Branch, true, nil
	}
	for n := 2; n < 1000; n++ {
		name := fmt.Sprintf("%s-%d", base, n)
		if tip(name) == "" {
			c.moved = c.Branch
			return name, false, nil
		}
	}
	return "", false, fmt.Errorf("branch %s moved since the workspace's last down, and %s-2 … %s-999 are all taken", c.Branch, base, base)
}

// Unchanged records that the session left the copy as it found it: no branch is made.
func (c *Copy) Unchanged() error {
	c.Result = &Result{Changed: false}
	return c.Save()
}

// BranchExists reports whether the user's repository already has branch.
func BranchExists(ctx context.Context, g gitrun.Git, repo, branch string) (bool, error) {
	_, err := g.Output(ctx, repo, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	var ge *gitrun.Error
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ge):
		return false, nil
	}
	return false, err
}

// Remove deletes the copy's layers and description. Files the session created below the
// upper layer may belong to ids of the user namespace (rootless): those are made writable
// first, and what still cannot be removed is named.
func (c *Copy) Remove() error {
	err := os.RemoveAll(c.Dir)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(c.Dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("remove the copy %s: %w (files made in the container by another id of the user namespace: podman unshare rm -rf %s)", c.Dir, err, c.Dir)
	}
	return nil
}

// ErrBranchExists says the session's branch is already in the user's repository.
var ErrBranchExists = errors.New("already exists in the repository")

// Check fails where Prepare would, without writing anything: a repository without a commit,
// or a branch name already taken (dry runs fail where real runs do).
func Check(ctx context.Context, g gitrun.Git, repo, branch string) error {
	if _, err := g.Output(ctx, repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"); err != nil {
		var ge *gitrun.Error
		if errors.As(err, &ge) {
			return fmt.Errorf("%s has no commit yet: commit something first (a session's branch starts from a commit)", repo)
		}
		return err
	}
	exists, err := BranchExists(ctx, g, repo, branch)
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("branch %s %w", branch, ErrBranchExists)
	}
	return nil
}

// MaxBundle bounds a bundle a container hands back (a sparse file costs it nothing).
const MaxBundle = 32 << 30

// copyFile copies a regular file (never through a symlink, never a FIFO) of at most
// MaxBundle bytes to a new file owned by o, streaming it.
func copyFile(from, to string, o owner) error {
	in, size, err := safeopen.Regular(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if size > MaxBundle {
		return fmt.Errorf("%s is %d GiB, more than the %d GiB a bundle may be", from, size>>30, MaxBundle>>30)
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.LimitReader(in, MaxBundle)); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return lchown(to, o)
}

// ImportClone makes repo — a repository git init made on this host, with no commits — a clone
// of what a governed container cloned into bundle: its branches become origin's
// remote-tracking branches, branch (the remote's default) a local branch tracking origin's and
// checked out, its tags tags; every object is checked on its way in, and git runs only in repo
// and a quarantine, never in anything the container wrote.
func ImportClone(ctx context.Context, g gitrun.Git, bundle, repo, branch, url string) error {
	if err := CheckBranch(branch); err != nil {
		return fmt.Errorf("the remote's default branch: %w", err)
	}
	owner, err := ownerOf(repo)
	if err != nil {
		return err
	}
	scratch, err := ownedTempDir(owner)
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	local := filepath.Join(scratch, "clone.bundle")
	if err := copyFile(bundle, local, owner); err != nil {
		return fmt.Errorf("read the clone's bundle: %w", err)
	}
	// git here runs without the user's and the system's configuration, so that nothing the
	// clone's files name — a filter in .gitattributes (git-lfs downloading from a URL of the
	// repository's .lfsconfig with the user's credentials), an fsmonitor — runs on this host.
	// Files are checked out as the repository holds them (LFS pointers stay pointers).
	g = g.With("GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_LFS_SKIP_SMUDGE=1").WithConfig("core.fsmonitor=false", "core.hooksPath=/dev/null")
	// --update-head-ok: HEAD of a repository git init made names the default branch of the
	// user's configuration (main, say), unborn; the remote's may be the same name.
	err = fetchChecked(ctx, g, "the clone", scratch, local, "", []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"},
		repo, []string{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*", "refs/heads/" + branch + ":refs/heads/" + branch}, nil, "--update-head-ok")
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"remote", "add", "origin", url},
		{"config", "branch." + branch + ".remote", "origin"},
		{"config", "branch." + branch + ".merge", "refs/heads/" + branch},
		{"symbolic-ref", "HEAD", "refs/heads/" + branch},
		{"reset", "--hard", "--quiet"},
	} {
		if _, err := g.Output(ctx, repo, args...); err != nil {
			return fmt.Errorf("set up the clone: git %s: %w", args[0], err)
		}
	}
	return nil
}

// checkIncoming refuses a branch whose history reaches what the session did not make: every
// commit on it after known (the base, and what an earlier down of the workspace brought)
// must be new to the user's repository. The copy's object store is the user's, so an agent
// could otherwise make the branch carry any object of it — a stash of ignored files (git
// stash --all), another branch, a reset commit — as a parent of its own commit, unseen in the
// branch's diff, and out with the user's next push. It also refuses a .gitmodules, in any of
// those commits, whose URL is a transport that runs a program (ext::, fd::). git runs in the
// quarantine (the bundle's objects) and reads object ids in the user's repository: neither
// runs anything the branch names.
func (c *Copy) checkIncoming(ctx context.Context, g gitrun.Git, quarantine, head string, known []string) error {
	out, err := revList(ctx, g, quarantine, []string{"--parents"}, head, known)
	if err != nil {
		return fmt.Errorf("list the branch's commits: %w", err)
	}
	var commits, roots []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			commits = append(commits, f[0])
			if len(f) == 1 {
				roots = append(roots, f[0])
			}
		}
	}
	if len(commits) > 0 {
		cmd, err := g.Command(ctx, c.Repo, "cat-file", "--batch-check=%(objectname) %(objecttype)")
		if err != nil {
			return err
		}
		cmd.Stdin = strings.NewReader(strings.Join(commits, "\n") + "\n")
		found, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("look the branch's commits up in %s: %w", c.Repo, err)
		}
		var old []string
		for _, line := range strings.Split(strings.TrimSpace(string(found)), "\n") {
			if id, kind, _ := strings.Cut(line, " "); kind != "missing" && id != "" {
				old = append(old, short(id))
			}
		}
		if len(old) > 0 {
			return fmt.Errorf("the agent's branch carries %d commit(s) your repository already has that the session did not start from (%s: a stash, another branch or an older commit merged in or reset to, which its diff would not show): it is not brought back", len(old), strings.Join(old, ", "))
		}
	}
	if len(roots) > 0 {
		// Every commit of a session descends from its base: one with no parent is a history
		// of its own, merged in where a diff of the tip does not show it.
		return fmt.Errorf("the agent's branch holds a commit with no parent (%s: a history unrelated to the session's base, which its diff would not show): it is not brought back", short(roots[0]))
	}
	if err := c.checkNoStashObjects(ctx, g, quarantine, head, known); err != nil {
		return err
	}
	touched, err := revList(ctx, g, quarantine, nil, head, known, ".gitmodules")
	if err != nil {
		return fmt.Errorf("list the branch's .gitmodules: %w", err)
	}
	for _, id := range strings.Fields(touched) {
		if _, err := g.Output(ctx, quarantine, "cat-file", "-e", id+":.gitmodules"); err != nil {
			continue // removed in that commit
		}
		// Read by git itself, as git would read it (line continuations, quoting).
		out, err := g.Output(ctx, quarantine, "config", "--blob", id+":.gitmodules", "-z", "--get-regexp", `^submodule\..*\.url$`)
		var ge *gitrun.Error
		switch {
		case errors.As(err, &ge) && ge.Stderr == "":
			continue // no URL
		case err != nil:
			return fmt.Errorf("the agent's .gitmodules in commit %s cannot be read: %w", short(id), err)
		}
		for _, entry := range strings.Split(strings.TrimSuffix(out, "\x00"), "\x00") {
			key, u, _ := strings.Cut(entry, "\n")
			// transport::address runs git-remote-<transport>, a program (ext:: a command line).
			if transport, _, ok := strings.Cut(u, "::"); ok && !strings.ContainsAny(transport, "/:") {
				return fmt.Errorf("the agent's .gitmodules in commit %s gives %s a URL through a remote helper (%s::…), which runs a program: it is not brought back", short(id), key, transport)
			}
		}
	}
	return nil
}

// checkNoStashObjects refuses a branch whose history holds a file or directory only the
// untracked-and-ignored part of the user's stashes has — what git stash --include-untracked
// or --all keeps (.env) in each stash's third parent — even one added and removed again by
// the agent's commits, so that neither the tip nor its diff shows it. The empty file and
// directory are never refused (every repository has them). Nothing is read when there is no
// stash; anything else that fails refuses.
func (c *Copy) checkNoStashObjects(ctx context.Context, g gitrun.Git, quarantine, head string, known []string) error {
	if _, err := g.Output(ctx, c.Repo, "rev-parse", "--verify", "--quiet", "refs/stash"); err != nil {
		var ge *gitrun.Error
		if errors.As(err, &ge) {
			return nil // no stash
		}
		return err
	}
	entries, err := g.Output(ctx, c.Repo, "log", "--walk-reflogs", "--format=%P", "refs/stash", "--")
	if err != nil {
		return fmt.Errorf("list the stashes: %w", err)
	}
	var untracked []string
	for _, line := range strings.Split(entries, "\n") {
		if parents := strings.Fields(line); len(parents) >= 3 {
			untracked = append(untracked, parents[2])
		}
	}
	if len(untracked) == 0 {
		return nil
	}
	secret, err := revList(ctx, g, c.Repo, []string{"--objects"}, strings.Join(untracked, "\n"), known)
	if err != nil {
		return fmt.Errorf("list what the stashes hold: %w", err)
	}
	inStash := map[string]bool{}
	for _, line := range strings.Split(secret, "\n") {
		if id, _, _ := strings.Cut(line, " "); id != "" && id != emptyBlob && id != emptyTree {
			inStash[id] = true
		}
	}
	if len(inStash) == 0 {
		return nil
	}
	brought, err := revList(ctx, g, quarantine, []string{"--objects"}, head, known)
	if err != nil {
		return fmt.Errorf("list the branch's objects: %w", err)
	}
	var found []string
	for _, line := range strings.Split(brought, "\n") {
		if id, name, _ := strings.Cut(line, " "); inStash[id] {
			found = append(found, strconv.Quote(orDash(name)))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("the agent's branch holds what only your stash of untracked or ignored files has (%s, read from the object store), in its history if not in its tip: it is not brought back", strings.Join(found, ", "))
	}
	return nil
}

// The empty file and the empty directory, by their ids.
const (
	emptyBlob = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
	emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
)

// revList is git rev-list with flags, of include (one or more ids, one per line) but not of
// exclude — given on standard input, however many refs a repository has — limited to paths.
func revList(ctx context.Context, g gitrun.Git, dir string, flags []string, include string, exclude []string, paths ...string) (string, error) {
	args := append(append([]string{"rev-list"}, flags...), "--stdin")
	if len(paths) > 0 {
		args = append(append(args, "--"), paths...)
	}
	cmd, err := g.Command(ctx, dir, args...)
	if err != nil {
		return "", err
	}
	var in strings.Builder // git 2.39 takes no --not on standard input: ^ID excludes
	in.WriteString(include + "\n")
	for _, x := range exclude {
		in.WriteString("^" + x + "\n")
	}
	cmd.Stdin = strings.NewReader(in.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &gitrun.Error{Args: args, Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return strings.TrimRight(string(out), "\n"), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
