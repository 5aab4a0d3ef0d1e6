package fingerprint

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	fdiff "github.com/go-git/go-git/v5/plumbing/format/diff"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
)

// diffWithGoGit is `git diff HEAD` computed with go-git, which runs nothing from the
// repository (no filters, hooks or external diff programs): the changes of tracked files,
// staged or not, against HEAD; untracked files are left out, as git leaves them out. A
// binary file is reported as differing, without its bytes.
func diffWithGoGit(repo string) ([]byte, string) {
	r, err := git.PlainOpenWithOptions(repo, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, "go-git cannot read this repository: " + err.Error()
	}
	head, err := r.Head()
	if err != nil {
		return nil, "the repository has no commit yet"
	}
	commit, err := r.CommitObject(head.Hash())
	if err != nil {
		return nil, "go-git cannot read HEAD: " + err.Error()
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, "go-git cannot read HEAD's tree: " + err.Error()
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, "go-git cannot read the work tree: " + err.Error()
	}
	status, err := wt.Status()
	if err != nil {
		return nil, "go-git cannot read the work tree's status: " + err.Error()
	}
	var changes []Change
	for _, path := range sortedKeys(status) {
		st := status[path]
		if st.Worktree == git.Untracked && st.Staging == git.Untracked {
			continue
		}
		c, err := fileChange(tree, filepath.Join(wt.Filesystem.Root(), filepath.FromSlash(path)), path)
		if err != nil {
			return nil, "go-git cannot diff " + path + ": " + err.Error()
		}
		changes = append(changes, c)
	}
	out, err := UnifiedDiff(changes)
	if err != nil {
		return nil, "go-git cannot write the diff: " + err.Error()
	}
	return out, ""
}

// FileVersion is one side of a file's change: its mode and content (a symbolic link's target).
type FileVersion struct {
	Mode    filemode.FileMode
	Content []byte
}

// Change is a file's two versions; nil is absent (added, deleted).
type Change struct {
	Path     string
	From, To *FileVersion
}

// ReadFileVersion is the file at disk as a diff sees it: nil when absent, or when it is neither a
// regular file nor a symbolic link (a directory where a file was: git reports it deleted).
func ReadFileVersion(disk string) (*FileVersion, error) {
	fi, err := os.Lstat(disk)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(disk)
		return &FileVersion{Mode: filemode.Symlink, Content: []byte(target)}, err
	case fi.Mode().IsRegular():
		data, err := os.ReadFile(disk)
		mode := filemode.Regular
		if fi.Mode()&0o111 != 0 {
			mode = filemode.Executable
		}
		return &FileVersion{Mode: mode, Content: data}, err
	}
	return nil, nil
}

// UnifiedDiff writes the changes as a git diff, computed in Go: nothing is run. Unchanged
// files are left out; a binary file is named as differing, without its bytes.
func UnifiedDiff(changes []Change) ([]byte, error) {
	var patches []fdiff.FilePatch
	for _, c := range changes {
		if fp := filePatchOfChange(c); fp != nil {
			patches = append(patches, fp)
		}
	}
	var out bytes.Buffer
	if err := fdiff.NewUnifiedEncoder(&out, fdiff.DefaultContextLines).Encode(patch(patches)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// fileChange compares path in HEAD's tree with the file on disk.
func fileChange(tree *object.Tree, disk, path string) (Change, error) {
	c := Change{Path: path}
	if f, err := tree.File(path); err == nil {
		content, err := f.Contents()
		if err != nil {
			return c, err
		}
		c.From = &FileVersion{Mode: f.Mode, Content: []byte(content)}
	} else if !errors.Is(err, object.ErrFileNotFound) {
		return c, err
	}
	var err error
	c.To, err = ReadFileVersion(disk)
	return c, err
}

// filePatchOfChange is the change as go-git's encoder takes it (nil when nothing changed).
func filePatchOfChange(c Change) fdiff.FilePatch {
	from, to := c.From, c.To
	if from == nil && to == nil || from != nil && to != nil && from.Mode == to.Mode && bytes.Equal(from.Content, to.Content) {
		return nil
	}
	fp := &filePatchOf{}
	if from != nil {
		fp.from = &file{path: c.Path, mode: from.Mode, content: from.Content}
	}
	if to != nil {
		fp.to = &file{path: c.Path, mode: to.Mode, content: to.Content}
	}
	if !fp.IsBinary() {
		for _, d := range diff.Do(string(fp.from.data()), string(fp.to.data())) {
			op := map[diffmatchpatch.Operation]fdiff.Operation{diffmatchpatch.DiffEqual: fdiff.Equal, diffmatchpatch.DiffInsert: fdiff.Add, diffmatchpatch.DiffDelete: fdiff.Delete}[d.Type]
			fp.chunks = append(fp.chunks, chunk{content: d.Text, op: op})
		}
	}
	return fp
}

type patch []fdiff.FilePatch

func (p patch) FilePatches() []fdiff.FilePatch { return p }
func (p patch) Message() string                { return "" }

type filePatchOf struct {
	from, to *file
	chunks   []fdiff.Chunk
}

func (p *filePatchOf) IsBinary() bool {
	return bytes.IndexByte(p.from.data(), 0) >= 0 || bytes.IndexByte(p.to.data(), 0) >= 0
}

func (p *filePatchOf) Files() (fdiff.File, fdiff.File) {
	var from, to fdiff.File
	if p.from != nil {
		from = p.from
	}
	if p.to != nil {
		to = p.to
	}
	return from, to
}

func (p *filePatchOf) Chunks() []fdiff.Chunk { return p.chunks }

type file struct {
	path    string
	mode    filemode.FileMode
	content []byte
}

func (f *file) data() []byte {
	if f == nil {
		return nil
	}
	return f.content
}
func (f *file) Hash() plumbing.Hash     { return plumbing.ComputeHash(plumbing.BlobObject, f.content) }
func (f *file) Mode() filemode.FileMode { return f.mode }
func (f *file) Path() string            { return f.path }

type chunk struct {
	content string
	op      fdiff.Operation
}

func (c chunk) Content() string       { return c.content }
func (c chunk) Type() fdiff.Operation { return c.op }

func sortedKeys(s git.Status) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
