package collect

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// builder makes the tree of the work tree as the agent left it, starting from its last
// commit's tree and looking only where the upper layer says something was touched.
type builder struct {
	r       Request
	st      *union
	ignores map[string][]ignoreRule // per directory, the patterns of its .gitignore
	skipped []string
}

type ignoreRule = gitignore.Pattern

// dir returns the tree of directory rel (slash-separated, "." for the top) as the merged
// view has it, given its tree in the commit (zero when the commit has none), and whether it
// differs. Only entries the upper layer holds — written, created or deleted (whiteouts) — or
// that exist on one side only are looked at; the rest keep the commit's ids.
func (b *builder) dir(rel string, treeHash plumbing.Hash) (plumbing.Hash, bool, error) {
	committed := map[string]object.TreeEntry{}
	if !treeHash.IsZero() {
		t, err := object.GetTree(b.st, treeHash)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		for _, e := range t.Entries {
			committed[e.Name] = e
		}
	}
	touched := map[string]bool{}
	if entries, err := os.ReadDir(filepath.Join(b.r.Upper, filepath.FromSlash(rel))); err == nil {
		for _, e := range entries {
			touched[e.Name()] = true
		}
	}
	merged := map[string]fs.FileInfo{}
	entries, err := os.ReadDir(filepath.Join(b.r.Workspace, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrPermission) {
		return plumbing.ZeroHash, false, errUnreadable
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return plumbing.ZeroHash, false, err
	}
	for _, e := range entries {
		if rel == "." && e.Name() == ".git" {
			continue
		}
		if info, err := e.Info(); err == nil {
			merged[e.Name()] = info
		}
	}
	names := map[string]bool{}
	for n := range committed {
		names[n] = true
	}
	for n := range merged {
		names[n] = true
	}
	var out []object.TreeEntry
	changed := false
	for n := range names {
		c, inCommit := committed[n]
		info, inView := merged[n]
		child := path.Join(rel, n)
		switch {
		case inCommit && !inView: // deleted (a whiteout, or hidden below an opaque directory)
			changed = true
			continue
		case inCommit && !touched[n]:
			out = append(out, c) // untouched: the lower layer's, as committed
			continue
		case !inCommit && b.ignored(child, info.IsDir()):
			continue // new, and ignored by the repository's .gitignore
		}
		e, ok, err := b.entry(child, info, c, inCommit)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if !ok {
			if inCommit {
				changed = true // became something git cannot hold
			}
			continue
		}
		if !inCommit || e.Hash != c.Hash || e.Mode != c.Mode {
			changed = true
		}
		out = append(out, e)
	}
	if !changed {
		return treeHash, false, nil
	}
	if len(out) == 0 && rel != "." {
		return plumbing.ZeroHash, true, nil // an empty directory: git keeps none
	}
	sortEntries(out)
	h, err := b.st.store(&object.Tree{Entries: out})
	return h, true, err
}

// entry is the tree entry for one touched or new path of the merged view.
func (b *builder) entry(rel string, info fs.FileInfo, committed object.TreeEntry, inCommit bool) (object.TreeEntry, bool, error) {
	name := path.Base(rel)
	full := filepath.Join(b.r.Workspace, filepath.FromSlash(rel))
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return object.TreeEntry{}, false, err
		}
		h, err := b.st.blob(strings.NewReader(target))
		return object.TreeEntry{Name: name, Mode: filemode.Symlink, Hash: h}, err == nil, err
	case info.Mode().IsRegular():
		f, err := os.Open(full)
		if errors.Is(err, fs.ErrPermission) {
			return b.unreadable(rel, committed, inCommit)
		}
		if err != nil {
			return object.TreeEntry{}, false, err
		}
		defer f.Close()
		h, err := b.st.blob(f)
		if err != nil {
			return object.TreeEntry{}, false, errors.New(rel + ": " + err.Error())
		}
		mode := filemode.Regular
		if info.Mode().Perm()&0o111 != 0 {
			mode = filemode.Executable
		}
		return object.TreeEntry{Name: name, Mode: mode, Hash: h}, true, nil
	case info.IsDir():
		if inCommit && committed.Mode == filemode.Submodule {
			return committed, true, nil // a submodule's work tree is not the repository's
		}
		if _, err := os.Lstat(filepath.Join(full, ".git")); err == nil {
			b.skipped = append(b.skipped, rel+"/ (a repository of its own)")
			return object.TreeEntry{}, false, nil
		}
		var tree plumbing.Hash
		if inCommit && committed.Mode == filemode.Dir {
			tree = committed.Hash
		}
		h, _, err := b.dirAll(rel, tree, inCommit && committed.Mode == filemode.Dir)
		if errors.Is(err, errUnreadable) {
			return b.unreadable(rel+"/", committed, inCommit)
		}
		if err != nil || h.IsZero() {
			return object.TreeEntry{}, false, err
		}
		return object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}, true, nil
	}
	b.skipped = append(b.skipped, rel+" (not a file, link or directory)")
	return object.TreeEntry{}, false, nil
}

// errUnreadable: a directory the collector (the agent's own user) may not list.
var errUnreadable = errors.New("unreadable")

// unreadable is what an entry the agent left unreadable to its own user (chmod 000)
// becomes: skipped and said, rather than failing the whole collection; a path the commit had
// keeps the commit's version, as nothing of the agent's change could be read.
func (b *builder) unreadable(rel string, committed object.TreeEntry, inCommit bool) (object.TreeEntry, bool, error) {
	what := rel + " (unreadable: the agent took away its own read permission)"
	if inCommit {
		what += "; the branch keeps its committed version"
	}
	b.skipped = append(b.skipped, what)
	return committed, inCommit, nil
}

// dirAll is dir for a directory that is touched (then only its touched entries are looked
// at) or new (then everything in it is, since the upper layer holds all of it).
func (b *builder) dirAll(rel string, tree plumbing.Hash, existed bool) (plumbing.Hash, bool, error) {
	if existed {
		return b.dir(rel, tree)
	}
	return b.dir(rel, plumbing.ZeroHash)
}

// ignored reports whether a new path is ignored by .git/info/exclude or a .gitignore in its
// directory or above (patterns are read once per directory; none of them runs anything).
func (b *builder) ignored(rel string, isDir bool) bool {
	parts := strings.Split(rel, "/")
	var rules []ignoreRule
	rules = append(rules, b.patterns(".git/info", "exclude", nil)...)
	for i := 0; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/")
		if dir == "" {
			dir = "."
		}
		domain := parts[:i]
		rules = append(rules, b.patterns(dir, ".gitignore", domain)...)
	}
	return gitignore.NewMatcher(rules).Match(parts, isDir)
}

func (b *builder) patterns(dir, file string, domain []string) []ignoreRule {
	key := dir + "/" + file
	if ps, ok := b.ignores[key]; ok {
		return ps
	}
	var ps []ignoreRule
	if f, err := os.Open(filepath.Join(b.r.Workspace, filepath.FromSlash(dir), file)); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			line := strings.TrimRight(s.Text(), "\r")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			ps = append(ps, gitignore.ParsePattern(line, append([]string{}, domain...)))
		}
		f.Close()
	}
	b.ignores[key] = ps
	return ps
}

// sortEntries orders a tree's entries as git does: by name, a directory as if it ended in /.
func sortEntries(es []object.TreeEntry) {
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(es, func(i, j int) bool { return key(es[i]) < key(es[j]) })
}
