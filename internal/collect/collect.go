// Package collect turns what an agent did in its copy of a repository into a git bundle. It
// runs inside a short-lived, network-less container (cmd/sourceos-collect), never on the
// host: the copy's .git is the agent's to write, and reading it is left to go-git, which
// runs nothing, in a place where even a reader's bug could reach nothing but the copy.
//
// It finds the agent's commits (those not in the user's object store), rewrites each with a
// trailer naming the session, commits what the agent left uncommitted on top (by comparing
// the merged view with the commit's tree, only where the overlay's upper layer says
// something was touched), and writes a bundle of the new objects whose one ref is the
// session's branch, plus a manifest.
package collect

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Trailer names the session on every commit of its branch.
const Trailer = "Sourceos-Session"

// The collector's output files.
const (
	BundleFile   = "agent.bundle"
	ManifestFile = "manifest.json"
)

// Request is what the collector needs: where things are mounted in its container, and the
// session's names.
type Request struct {
	Workspace string    `json:"workspace"` // the copy, merged (lower + upper)
	Upper     string    `json:"upper"`     // the overlay's upper layer, read-only
	BaseGit   string    `json:"baseGit"`   // the user's .git, read-only: what is not new
	Out       string    `json:"out"`
	Session   string    `json:"session"`
	Branch    string    `json:"branch"`
	Base      string    `json:"base"` // the commit the branch started from
	Date      time.Time `json:"date"` // the leftover commit's date
}

// Manifest is what the collector writes beside the bundle.
type Manifest struct {
	// Head is the branch's commit; Base when the agent left nothing (then there is no bundle).
	Head string `json:"head"`
	// Commits are the branch's commits after Base, oldest first, as rewritten.
	Commits []string `json:"commits"`
	// Leftover is the commit of what the agent left uncommitted ("" when nothing was).
	Leftover string `json:"leftover,omitempty"`
	// Skipped are paths not collected, with why (nested repositories, special files).
	Skipped []string `json:"skipped,omitempty"`
}

// Limits on what one session can bring back.
const (
	maxCommits   = 100_000
	maxFileBytes = 100 << 20
)

// Run collects the session's work and writes the bundle and the manifest to r.Out.
func Run(r Request) (Manifest, error) {
	m := Manifest{Commits: []string{}}
	base := plumbing.NewHash(r.Base)
	if base.IsZero() || base.String() != r.Base {
		return m, fmt.Errorf("base %q is not a commit id", r.Base)
	}
	known := filesystem.NewStorageWithOptions(osfs.New(r.BaseGit), cache.NewObjectLRUDefault(), filesystem.Options{})
	// The agent's repository is the copy's .git while it is a directory. An agent that
	// removed it or made it a file or a link (to anywhere) has no commits to bring: its files
	// still come back, as the leftover commit on the base.
	var ws storage = memory.NewStorage()
	if fi, err := os.Lstat(filepath.Join(r.Workspace, ".git")); err == nil && fi.IsDir() {
		ws = filesystem.NewStorageWithOptions(osfs.New(filepath.Join(r.Workspace, ".git")), cache.NewObjectLRUDefault(), filesystem.Options{})
	}
	st := &union{Storage: memory.NewStorage(), ws: ws, base: known}
	inBase := func(h plumbing.Hash) bool { return known.HasEncodedObject(h) == nil }

	head, err := resolveHead(ws)
	if err != nil {
		return m, err
	}
	if head.IsZero() {
		head = base
	}
	commits, err := newCommits(st, inBase, head)
	if err != nil {
		return m, err
	}
	rewritten := map[plumbing.Hash]plumbing.Hash{}
	for _, c := range commits {
		nc := *c
		nc.ParentHashes = nil
		for _, p := range c.ParentHashes {
			if np, ok := rewritten[p]; ok {
				p = np
			}
			nc.ParentHashes = append(nc.ParentHashes, p)
		}
		nc.Message = withTrailer(c.Message, r.Session)
		nc.PGPSignature, nc.Encoding, nc.ExtraHeaders = "", c.Encoding, nil
		h, err := st.store(&nc)
		if err != nil {
			return m, err
		}
		rewritten[c.Hash] = h
		m.Commits = append(m.Commits, h.String())
	}
	if h, ok := rewritten[head]; ok {
		head = h
	}
	headCommit, err := object.GetCommit(st, head)
	if err != nil {
		return m, fmt.Errorf("read the agent's HEAD %s: %w", head, err)
	}
	b := &builder{r: r, st: st, ignores: map[string][]ignoreRule{}}
	tree, changed, err := b.dir(".", headCommit.TreeHash)
	if err != nil {
		return m, err
	}
	m.Skipped = b.skipped
	if changed {
		sig := object.Signature{Name: "sourceosctl", Email: "sourceosctl@localhost", When: r.Date}
		leftover := &object.Commit{Author: sig, Committer: sig, TreeHash: tree, ParentHashes: []plumbing.Hash{head},
			Message: fmt.Sprintf("sourceosctl: what the agent left uncommitted in session %s\n\n%s: %s\n", r.Session, Trailer, r.Session)}
		if head, err = st.store(leftover); err != nil {
			return m, err
		}
		m.Leftover = head.String()
		m.Commits = append(m.Commits, head.String())
	}
	m.Head = head.String()
	if head != base {
		if err := writeBundle(filepath.Join(r.Out, BundleFile), st, inBase, head, "refs/heads/"+r.Branch); err != nil {
			return m, err
		}
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	return m, os.WriteFile(filepath.Join(r.Out, ManifestFile), append(raw, '\n'), 0o644)
}

// resolveHead is the commit the copy's HEAD names, through at most a few symbolic refs;
// zero when it names nothing (an unborn branch).
func resolveHead(s storer.ReferenceStorer) (plumbing.Hash, error) {
	name := plumbing.HEAD
	for i := 0; i < 5; i++ {
		ref, err := s.Reference(name)
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return plumbing.ZeroHash, nil
		}
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read %s: %w", name, err)
		}
		if ref.Type() == plumbing.HashReference {
			return ref.Hash(), nil
		}
		name = ref.Target()
	}
	return plumbing.ZeroHash, errors.New("HEAD is a chain of symbolic refs")
}

// newCommits are the commits reachable from head that the user's repository does not have,
// parents before children.
func newCommits(s storer.EncodedObjectStorer, inBase func(plumbing.Hash) bool, head plumbing.Hash) ([]*object.Commit, error) {
	seen := map[plumbing.Hash]bool{}
	var order []*object.Commit
	// Iterative depth-first post-order: a long history must not overflow the stack.
	type frame struct {
		c    *object.Commit
		next int
	}
	var stack []frame
	push := func(h plumbing.Hash) error {
		if seen[h] || inBase(h) {
			return nil
		}
		seen[h] = true
		if len(seen) > maxCommits {
			return fmt.Errorf("more than %d new commits", maxCommits)
		}
		c, err := object.GetCommit(s, h)
		if err != nil {
			return fmt.Errorf("read commit %s: %w", h, err)
		}
		stack = append(stack, frame{c: c})
		return nil
	}
	if err := push(head); err != nil {
		return nil, err
	}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next < len(top.c.ParentHashes) {
			p := top.c.ParentHashes[top.next]
			top.next++
			if err := push(p); err != nil {
				return nil, err
			}
			continue
		}
		order = append(order, top.c)
		stack = stack[:len(stack)-1]
	}
	return order, nil
}

var trailerLine = regexp.MustCompile(`^[A-Za-z0-9-]+: .+$`)

// withTrailer adds the session's trailer to a commit message, in its trailer block when the
// last paragraph is one. A trailer of that name the agent wrote itself (naming another
// session, or this one) is removed first: the only one left is sourceosctl's.
func withTrailer(msg, session string) string {
	line := Trailer + ": " + session
	var kept []string
	for _, l := range strings.Split(msg, "\n") {
		if key, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(key), Trailer) {
			continue
		}
		kept = append(kept, l)
	}
	msg = strings.TrimRight(strings.Join(kept, "\n"), "\n")
	for strings.HasSuffix(msg, "\n\n") || strings.Contains(msg, "\n\n\n") {
		msg = strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n\n\n", "\n\n")
	}
	if msg == "" {
		return line + "\n"
	}
	paragraphs := strings.Split(msg, "\n\n")
	last := paragraphs[len(paragraphs)-1]
	isTrailers := len(paragraphs) > 1
	for _, l := range strings.Split(last, "\n") {
		isTrailers = isTrailers && trailerLine.MatchString(l)
	}
	if isTrailers {
		return msg + "\n" + line + "\n"
	}
	return msg + "\n\n" + line + "\n"
}

// union reads objects from the new ones first, then from the copy's store.
type union struct {
	*memory.Storage
	ws, base storer.EncodedObjectStorer
}

// storage is what the agent's repository is read through.
type storage interface {
	storer.EncodedObjectStorer
	storer.ReferenceStorer
}

func (u *union) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o, err := u.Storage.EncodedObject(t, h); err == nil {
		return o, nil
	}
	if o, err := u.ws.EncodedObject(t, h); err == nil || u.base == nil {
		return o, err
	}
	return u.base.EncodedObject(t, h)
}

func (u *union) HasEncodedObject(h plumbing.Hash) error {
	if u.Storage.HasEncodedObject(h) == nil {
		return nil
	}
	if err := u.ws.HasEncodedObject(h); err == nil || u.base == nil {
		return err
	}
	return u.base.HasEncodedObject(h)
}

func (u *union) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if n, err := u.Storage.EncodedObjectSize(h); err == nil {
		return n, nil
	}
	if n, err := u.ws.EncodedObjectSize(h); err == nil || u.base == nil {
		return n, err
	}
	return u.base.EncodedObjectSize(h)
}

// store encodes a commit or tree into the new objects and returns its id.
func (u *union) store(o interface {
	Encode(plumbing.EncodedObject) error
}) (plumbing.Hash, error) {
	obj := u.Storage.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return u.Storage.SetEncodedObject(obj)
}

// blob stores a blob read from r.
func (u *union) blob(r io.Reader) (plumbing.Hash, error) {
	obj := u.Storage.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	n, err := io.Copy(w, io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if n > maxFileBytes {
		return plumbing.ZeroHash, fmt.Errorf("larger than %d MiB", maxFileBytes>>20)
	}
	_ = w.Close()
	return u.Storage.SetEncodedObject(obj)
}

// writeBundle writes a v2 bundle of every object reachable from head that the user's
// repository lacks; the commits it builds on are its prerequisites.
func writeBundle(path string, s *union, inBase func(plumbing.Hash) bool, head plumbing.Hash, ref string) error {
	var objects []plumbing.Hash
	prereqs := map[plumbing.Hash]bool{}
	seen := map[plumbing.Hash]bool{}
	var addTree func(h plumbing.Hash) error
	addTree = func(h plumbing.Hash) error {
		if seen[h] || inBase(h) {
			return nil
		}
		seen[h] = true
		objects = append(objects, h)
		t, err := object.GetTree(s, h)
		if err != nil {
			return fmt.Errorf("read tree %s: %w", h, err)
		}
		for _, e := range t.Entries {
			switch {
			case e.Mode == 0o160000: // a submodule's commit: not ours to carry
			case e.Mode.IsFile():
				if !seen[e.Hash] && !inBase(e.Hash) {
					seen[e.Hash] = true
					objects = append(objects, e.Hash)
				}
			default:
				if err := addTree(e.Hash); err != nil {
					return err
				}
			}
		}
		return nil
	}
	queue := []plumbing.Hash{head}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		if inBase(h) {
			prereqs[h] = true
			continue
		}
		seen[h] = true
		objects = append(objects, h)
		c, err := object.GetCommit(s, h)
		if err != nil {
			return fmt.Errorf("read commit %s: %w", h, err)
		}
		if err := addTree(c.TreeHash); err != nil {
			return err
		}
		queue = append(queue, c.ParentHashes...)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# v2 git bundle")
	for h := range prereqs {
		fmt.Fprintf(w, "-%s\n", h)
	}
	fmt.Fprintf(w, "%s %s\n\n", head, ref)
	if _, err := packfile.NewEncoder(w, s, false).Encode(objects, 0); err != nil {
		f.Close()
		return fmt.Errorf("write the bundle's pack: %w", err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
