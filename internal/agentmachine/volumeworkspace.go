package agentmachine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// maxVolumeTree bounds what travels either way for a volume workspace: a repository larger
// than this is not shipped, and a volume grown larger is not brought back (it is kept).
const maxVolumeTree = 1 << 30

// tree is a workspace's files by slash path: regular files and symbolic links.
type tree map[string]*fingerprint.FileVersion

// shipRepo fills the programs volume when the plan ships the helper alone, then does a
// volume workspace's first half: the repository's files — tracked and
// untracked, not ignored, not .git — packed here and imported into the session's volume.
// Its clean-up removes the volume, unless the session's changes could not be brought back.
func (r *sessionRun) shipRepo(ctx context.Context) (func(), error) {
	if p := r.plan.Programs; p != nil {
		if err := r.shipPrograms(ctx, *p); err != nil {
			return nil, fmt.Errorf("ship the helper: %w", err)
		}
	}
	w := r.plan.Workspace
	if w.Mode != WorkspaceVolume {
		return nil, nil
	}
	files, err := r.repoFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the files of %s to ship: %w", r.plan.Repo, err)
	}
	uid, gid := userIDs(r.plan.Container.User)
	archive, before, err := packTree(r.plan.Repo, files, uid, gid)
	if err != nil {
		return nil, err
	}
	r.volumeBefore = before
	labels := map[string]string{LabelManaged: "true", LabelSession: r.plan.SessionID}
	if owned, ok := r.engine.(interface {
		CreateOwnedVolume(ctx context.Context, name string, labels map[string]string, uid, gid int) error
	}); ok {
		err = owned.CreateOwnedVolume(ctx, w.Volume, labels, uid, gid)
	} else {
		err = r.engine.CreateVolume(ctx, w.Volume, labels)
	}
	if err != nil {
		return nil, err
	}
	undo := func() {
		if r.volumeKept {
			return
		}
		if err := r.engine.RemoveVolume(context.WithoutCancel(ctx), w.Volume); err != nil {
			r.event("the workspace volume %s could not be removed: %v", w.Volume, err)
		}
	}
	if err := r.engine.ImportVolume(ctx, w.Volume, r.plan.Image.Ref, bytes.NewReader(archive)); err != nil {
		return undo, err
	}
	r.event("repository shipped to volume %s: %d files, %d bytes", w.Volume, len(before), len(archive))
	return undo, nil
}

// repoFiles lists what a volume workspace ships: git's tracked and untracked files that are
// not ignored (the repository is the user's own, read before the session), or every file of
// a directory that is not a repository.
func (r *sessionRun) repoFiles(ctx context.Context) ([]string, error) {
	repo := r.plan.Repo
	if repocopy.IsRepository(repo) && r.GitBinary != "" {
		out, err := r.gitrun().Raw(ctx, repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		if err != nil {
			return nil, err
		}
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" {
				files = append(files, f)
			}
		}
		return files, nil
	}
	var files []string
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(repo, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files, err
}

// packTree archives the files of dir (slash paths relative to it), owned by uid:gid (the
// session's user, the volume's root included), and returns them as a tree: regular files
// and symbolic links (never followed); others, and files gone since listed, are left out.
func packTree(dir string, files []string, uid, gid int) ([]byte, tree, error) {
	sort.Strings(files)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	t := tree{}
	dirs := map[string]bool{}
	var total int64
	for _, rel := range files {
		v, err := fingerprint.ReadFileVersion(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", rel, err)
		}
		if v == nil {
			continue
		}
		if total += int64(len(v.Content)); total > maxVolumeTree {
			return nil, nil, fmt.Errorf("%s holds more than %d MiB of files to ship to a remote service; work on it with a local service", dir, maxVolumeTree>>20)
		}
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		t[rel] = v
	}
	var dirList []string
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList) // parents first
	for _, d := range append([]string{"."}, dirList...) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Uid: uid, Gid: gid}); err != nil {
			return nil, nil, err
		}
	}
	for _, rel := range sortedTree(t) {
		v := t[rel]
		h := &tar.Header{Name: rel, Mode: 0o644, Size: int64(len(v.Content)), Typeflag: tar.TypeReg, Uid: uid, Gid: gid}
		switch v.Mode {
		case filemode.Symlink:
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, string(v.Content), 0, 0o777
		case filemode.Executable:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(v.Content); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), t, nil
}

// readTree reads a volume's archive as the server sent it: regular files and symbolic links
// by clean relative path. A path leaving the volume, or more than maxVolumeTree bytes, is an
// error; what is below .git is left out (the patch is of the work tree).
func readTree(r io.Reader) (tree, error) {
	tr := tar.NewReader(r)
	t := tree{}
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the volume's archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			if name == "." {
				continue
			}
			return nil, fmt.Errorf("the volume's archive names %q, outside the volume", h.Name)
		}
		if name == ".git" || strings.HasPrefix(name, ".git/") {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if total += h.Size; total > maxVolumeTree {
				return nil, fmt.Errorf("the volume holds more than %d MiB", maxVolumeTree>>20)
			}
			data, err := io.ReadAll(io.LimitReader(tr, h.Size))
			if err != nil {
				return nil, fmt.Errorf("read the volume's archive: %w", err)
			}
			mode := filemode.Regular
			if h.Mode&0o111 != 0 {
				mode = filemode.Executable
			}
			t[name] = &fingerprint.FileVersion{Mode: mode, Content: data}
		case tar.TypeSymlink:
			t[name] = &fingerprint.FileVersion{Mode: filemode.Symlink, Content: []byte(h.Linkname)}
		}
	}
}

// volumeChanges compares the shipped tree with the volume's: the changes as a patch, and the
// binary files that changed (named, not patched: git apply needs a full index for those).
// A file the session added that the repository's own .gitignore files ignore is left out, as
// git would leave it out (build output, node_modules).
func volumeChanges(repo string, before, after tree) (changes []fingerprint.Change, binary []string) {
	var ignore gitignore.Matcher
	if ps, err := gitignore.ReadPatterns(osfs.New(repo), nil); err == nil {
		ignore = gitignore.NewMatcher(ps)
	}
	paths := map[string]bool{}
	for p := range before {
		paths[p] = true
	}
	for p := range after {
		if before[p] == nil && ignore != nil && ignore.Match(strings.Split(p, "/"), false) {
			continue
		}
		paths[p] = true
	}
	var sorted []string
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	for _, p := range sorted {
		from, to := before[p], after[p]
		if from != nil && to != nil && from.Mode == to.Mode && bytes.Equal(from.Content, to.Content) {
			continue
		}
		if isBinary(from) || isBinary(to) {
			binary = append(binary, p)
			continue
		}
		changes = append(changes, fingerprint.Change{Path: p, From: from, To: to})
	}
	return changes, binary
}

func isBinary(v *fingerprint.FileVersion) bool {
	return v != nil && bytes.IndexByte(v.Content, 0) >= 0
}

// collectVolume is a volume workspace's second half: the volume's files, exported once the
// session ended, compared with what was shipped; the difference is the session's patch,
// written beside the copies and signed into the evidence. A failure keeps the volume and
// says where the work is.
func (r *sessionRun) collectVolume(ctx context.Context) {
	w := r.plan.Workspace
	if w.Mode != WorkspaceVolume || w.ReadOnly || !r.out.Ran || r.volumeBefore == nil {
		return
	}
	fail := func(err error) {
		r.volumeKept = true
		r.volumeErr = fmt.Errorf("the session's changes could not be brought back from volume %s (kept there): %w", w.Volume, err)
		r.event("%v", r.volumeErr)
	}
	var buf bytes.Buffer
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), collectTimeout)
	defer cancel()
	if err := r.engine.ExportVolume(cctx, w.Volume, r.plan.Image.Ref, &buf); err != nil {
		fail(err)
		return
	}
	after, err := readTree(&buf)
	if err != nil {
		fail(err)
		return
	}
	changes, binary := volumeChanges(r.plan.Repo, r.volumeBefore, after)
	r.volumeBinary = binary
	if len(changes) == 0 {
		r.event("volume %s: the session changed no text file%s", w.Volume, binaryNote(binary))
		return
	}
	patch, err := fingerprint.UnifiedDiff(changes)
	if err != nil {
		fail(err)
		return
	}
	file := filepath.Join(r.Dirs.State, "patches", r.plan.SessionID+".patch")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		fail(err)
		return
	}
	if err := atomicfile.Write(file, patch, 0o600, atomicfile.Options{}); err != nil {
		fail(err)
		return
	}
	r.patch, r.volumePatch = patch, file
	r.event("volume %s: %s changed, patch %s%s", w.Volume, plural(len(changes), "file"), file, binaryNote(binary))
}

func binaryNote(binary []string) string {
	if len(binary) == 0 {
		return ""
	}
	return "; binary files changed, not in the patch: " + strings.Join(binary, ", ")
}

// reportVolume tells the user where a remote session's work is.
func (r *sessionRun) reportVolume() {
	switch {
	case r.plan.Workspace.Mode != WorkspaceVolume:
	case r.volumeErr != nil:
		fmt.Fprintf(r.IO.ErrOut, "! %v\n", r.volumeErr)
	case r.volumePatch != "":
		fmt.Fprintf(r.IO.ErrOut, "The session's changes to %s are the patch %s%s.\n  review: less %s\n  apply:  git -C %s apply %s\n",
			r.plan.Repo, r.volumePatch, binaryNote(r.volumeBinary), r.volumePatch, r.plan.Repo, r.volumePatch)
	case r.out.Ran && !r.plan.Workspace.ReadOnly:
		fmt.Fprintf(r.IO.ErrOut, "The session changed no text file of %s%s.\n", r.plan.Repo, binaryNote(r.volumeBinary))
	}
}

func sortedTree(t tree) []string {
	out := make([]string, 0, len(t))
	for p := range t {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
