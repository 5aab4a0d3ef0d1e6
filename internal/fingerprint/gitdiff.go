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
	var patches []fdiff.FilePatch
	for _, path := range sortedKeys(status) {
		st := status[path]
		if st.Worktree == git.Untracked && st.Staging == git.Untracked {
			continue
		}
		fp, err := filePatch(tree, filepath.Join(wt.Filesystem.Root(), filepath.FromSlash(path)), path)
		if err != nil {
			return nil, "go-git cannot diff " + path + ": " + err.Error()
		}
		if fp != nil {
			patches = append(patches, fp)
		}
	}
	var out bytes.Buffer
	if err := fdiff.NewUnifiedEncoder(&out, fdiff.DefaultContextLines).Encode(patch(patches)); err != nil {
		return nil, "go-git cannot write the diff: " + err.Error()
	}
	return out.Bytes(), ""
}

// filePatch compares path in HEAD's tree with the file on disk (nil when they are equal).
func filePatch(tree *object.Tree, disk, path string) (fdiff.FilePatch, error) {
	var from, to *file
	if f, err := tree.File(path); err == nil {
		content, err := f.Contents()
		if err != nil {
			return nil, err
		}
		from = &file{path: path, mode: f.Mode, content: []byte(content)}
	} else if !errors.Is(err, object.ErrFileNotFound) {
		return nil, err
	}
	if fi, err := os.Lstat(disk); err == nil {
		to = &file{path: path, mode: filemode.Regular}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(disk)
			if err != nil {
				return nil, err
			}
			to.mode, to.content = filemode.Symlink, []byte(target)
		case fi.Mode().IsRegular():
			if to.content, err = os.ReadFile(disk); err != nil {
				return nil, err
			}
			if fi.Mode()&0o111 != 0 {
				to.mode = filemode.Executable
			}
		default:
			return nil, nil // a directory or device where a file was: git reports it as deleted
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if from != nil && to != nil && from.mode == to.mode && bytes.Equal(from.content, to.content) {
		return nil, nil
	}
	fp := &filePatchOf{from: from, to: to}
	if !fp.IsBinary() {
		for _, d := range diff.Do(string(from.data()), string(to.data())) {
			op := map[diffmatchpatch.Operation]fdiff.Operation{diffmatchpatch.DiffEqual: fdiff.Equal, diffmatchpatch.DiffInsert: fdiff.Add, diffmatchpatch.DiffDelete: fdiff.Delete}[d.Type]
			fp.chunks = append(fp.chunks, chunk{content: d.Text, op: op})
		}
	}
	return fp, nil
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
