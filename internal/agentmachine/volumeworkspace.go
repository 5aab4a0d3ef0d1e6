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
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

// maxVolumeTree bounds what travels either way for a volume workspace: a repository larger
// than this is not shipped, and a volume grown larger is not brought back (it is kept).
const maxVolumeTree = 1 << 30

// maxVolumeEntries bounds the entries read back from a volume.
const maxVolumeEntries = 1_000_000

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
	// A hard link to a protected file refuses the session before anything leaves this host.
	if err := r.checkLinks(); err != nil {
		return nil, err
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
	if inWorkTree(repo) {
		if r.GitBinary == "" {
			return nil, errors.New("it is in a git repository, whose files git chooses (tracked and untracked, never ignored ones such as .env), and git is not installed")
		}
		// Relative to repo, also from a subdirectory or a linked worktree.
		out, err := r.gitrun().Raw(ctx, repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		if err != nil {
			return nil, err
		}
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" && !hasGitComponent(f) {
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
		if strings.EqualFold(d.Name(), ".git") { // a nested repository's, directory or file
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(repo, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files, err
}

// inWorkTree reports whether dir is in a git work tree: it or a parent holds .git (a
// directory, or the file of a linked worktree or submodule).
func inWorkTree(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return true
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

// hasGitComponent reports whether a slash path goes through a .git (any case).
func hasGitComponent(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if strings.EqualFold(c, ".git") {
			return true
		}
	}
	return false
}

// plainName reports whether a path can be written in a patch as it is: no control character,
// quote or backslash, which git would quote and a reader (or go-git's encoder) might not.
func plainName(p string) bool {
	return !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' })
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
		disk := filepath.Join(dir, filepath.FromSlash(rel))
		if fi, err := os.Lstat(disk); err == nil && fi.Mode().IsRegular() && total+fi.Size() > maxVolumeTree {
			return nil, nil, fmt.Errorf("%s holds more than %d MiB of files to ship to a remote service; work on it with a local service", dir, maxVolumeTree>>20)
		}
		v, err := fingerprint.ReadFileVersion(disk)
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
	for entries := 0; ; entries++ {
		if entries > maxVolumeEntries {
			return nil, fmt.Errorf("the volume holds more than %d entries", maxVolumeEntries)
		}
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
		if hasGitComponent(name) {
			continue // a repository's own data, the session's or a nested one's: not the work tree
		}
		if !plainName(name) {
			return nil, fmt.Errorf("the volume holds a file named %q, which a patch cannot carry safely", name)
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
		case tar.TypeLink: // a hard link to a file read before: the same content
			if v := t[path.Clean(strings.TrimPrefix(h.Linkname, "./"))]; v != nil {
				t[name] = v
			}
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
	// Capped: the session chose what the volume holds.
	if err := r.engine.ExportVolume(cctx, w.Volume, r.plan.Image.Ref, &capWriter{w: &buf, left: maxVolumeTree + maxVolumeTree/8}); err != nil {
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
	if len(binary) > 0 {
		r.volumeKept = true // the patch cannot carry them: they stay in the volume
	}
	if len(changes) == 0 {
		r.event("volume %s: the session changed no text file%s", w.Volume, binaryNote(binary))
		return
	}
	patch, err := fingerprint.UnifiedDiff(changes)
	if err == nil {
		err = checkPatch(patch, len(changes))
	}
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

// capWriter fails once more than left bytes were written.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	if c.left -= int64(len(p)); c.left < 0 {
		return 0, fmt.Errorf("the volume's archive is larger than %d MiB", (maxVolumeTree+maxVolumeTree/8)>>20)
	}
	return c.w.Write(p)
}

// checkPatch makes sure the patch is exactly n file diffs and nothing git apply would read as
// a copy or rename: the names were checked, this checks the result.
func checkPatch(patch []byte, n int) error {
	diffs := 0
	for _, line := range strings.Split(string(patch), "\n") {
		switch {
		case strings.HasPrefix(line, "diff --git "):
			diffs++
		case strings.HasPrefix(line, "copy from "), strings.HasPrefix(line, "copy to "), strings.HasPrefix(line, "rename from "),
			strings.HasPrefix(line, "rename to "), strings.HasPrefix(line, "similarity index "):
			return fmt.Errorf("the patch holds a line %q, which sourceosctl never writes", textsafe.String(line))
		}
	}
	if diffs != n {
		return fmt.Errorf("the patch holds %d file diffs for %d changed files", diffs, n)
	}
	return nil
}

func binaryNote(binary []string) string {
	if len(binary) == 0 {
		return ""
	}
	quoted := make([]string, len(binary))
	for i, b := range binary {
		quoted[i] = textsafe.String(b)
	}
	return "; binary files changed, not in the patch (they stay in the volume): " + strings.Join(quoted, ", ")
}

// reportVolume tells the user where a remote session's work is, and how to get at a kept
// volume.
func (r *sessionRun) reportVolume() {
	w := r.plan.Workspace
	switch {
	case w.Mode != WorkspaceVolume:
		return
	case r.volumeErr != nil:
		fmt.Fprintf(r.IO.ErrOut, "! %s\n", textsafe.String(r.volumeErr.Error()))
	case r.volumePatch != "":
		fmt.Fprintf(r.IO.ErrOut, "The session's changes to %s are the patch %s%s.\n  review: git -C %s apply --stat --summary %s (and read it)\n  apply:  git -C %s apply %s\n",
			r.plan.Repo, r.volumePatch, binaryNote(r.volumeBinary), ShellQuote([]string{r.plan.Repo}), ShellQuote([]string{r.volumePatch}),
			ShellQuote([]string{r.plan.Repo}), ShellQuote([]string{r.volumePatch}))
	case r.out.Ran && !w.ReadOnly:
		fmt.Fprintf(r.IO.ErrOut, "The session changed no text file of %s%s.\n", r.plan.Repo, binaryNote(r.volumeBinary))
	}
	if r.volumeKept {
		url := r.plan.Connection.URI
		fmt.Fprintf(r.IO.ErrOut, "  the volume %s stays on the service:\n    podman --url %s volume export %s > %s.tar\n    podman --url %s volume rm %s\n",
			w.Volume, url, w.Volume, w.Volume, url, w.Volume)
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
