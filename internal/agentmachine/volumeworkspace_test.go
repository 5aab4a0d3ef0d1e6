package agentmachine

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
)

func tarOf(t *testing.T, entries ...tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := h.Linkname // a regular file's content rides in Linkname here, for brevity
		if h.Typeflag == tar.TypeReg {
			h.Size, h.Linkname = int64(len(body)), ""
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte(body))
		}
	}
	_ = tw.Close()
	return &buf
}

func TestAVolumeTreeRoundTripsAndItsChangesArePatched(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"README": "a\n", "src/main.go": "package main\n", "run.sh": "#!/bin/sh\n", ".gitignore": "build/\n", "img.bin": "\x00\x01"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if name == "run.sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("README", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	archive, before, err := packTree(dir, []string{"README", "src/main.go", "run.sh", ".gitignore", "img.bin", "link", "vanished"}, 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 6 || before["run.sh"].Mode != filemode.Executable || before["link"].Mode != filemode.Symlink {
		t.Fatalf("packed: %v", before)
	}
	back, err := readTree(bytes.NewReader(archive))
	if err != nil || len(back) != len(before) {
		t.Fatalf("read back %d files (%v), want %d", len(back), err, len(before))
	}
	if c, b := volumeChanges(dir, before, back); len(c) != 0 || len(b) != 0 {
		t.Fatalf("an unchanged volume has changes: %v %v", c, b)
	}
	after := tree{}
	for k, v := range back {
		after[k] = v
	}
	after["README"] = &fingerprint.FileVersion{Mode: filemode.Regular, Content: []byte("a\nb\n")}
	delete(after, "src/main.go")
	after["new.txt"] = &fingerprint.FileVersion{Mode: filemode.Regular, Content: []byte("n\n")}
	after["build/out.o"] = &fingerprint.FileVersion{Mode: filemode.Regular, Content: []byte("ignored\n")}
	after["img.bin"] = &fingerprint.FileVersion{Mode: filemode.Regular, Content: []byte("\x00\x02")}
	changes, binary := volumeChanges(dir, before, after)
	var paths []string
	for _, c := range changes {
		paths = append(paths, c.Path)
	}
	if strings.Join(paths, ",") != "README,new.txt,src/main.go" || strings.Join(binary, ",") != "img.bin" {
		t.Errorf("changes %v, binary %v", paths, binary)
	}
	patch, err := fingerprint.UnifiedDiff(changes)
	if err != nil || !strings.Contains(string(patch), "+b\n") || !strings.Contains(string(patch), "deleted file mode 100644") {
		t.Errorf("patch (%v):\n%s", err, patch)
	}
}

func TestAVolumesArchiveCannotNameAPathOutsideIt(t *testing.T) {
	for _, name := range []string{"../escape", "/etc/passwd", "a/../../escape"} {
		if _, err := readTree(tarOf(t, tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: "x"})); err == nil || !strings.Contains(err.Error(), "outside the volume") {
			t.Errorf("%s: %v", name, err)
		}
	}
	got, err := readTree(tarOf(t, tar.Header{Name: "./", Typeflag: tar.TypeDir}, tar.Header{Name: ".git/config", Typeflag: tar.TypeReg, Linkname: "[core]"},
		tar.Header{Name: "./ok", Typeflag: tar.TypeReg, Linkname: "fine"}, tar.Header{Name: "dev", Typeflag: tar.TypeChar}))
	if err != nil || len(got) != 1 || string(got["ok"].Content) != "fine" {
		t.Errorf("read: %v %v (want only ok: .git and devices left out)", got, err)
	}
}

func TestAVolumesFileNamesCannotRewriteThePatch(t *testing.T) {
	// A name that would be read as git headers (copy a host file the session never saw),
	// or quoted by git but not by the encoder: refused, so the volume is kept.
	for _, name := range []string{".env b/docs/notes.txt\ncopy from .env\ncopy to docs/notes.txt\nZ", "a\tb", `q"uote`, `back\slash`, "esc\x1b[2J"} {
		if _, err := readTree(tarOf(t, tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: "x"})); err == nil || !strings.Contains(err.Error(), "which a patch cannot carry safely") {
			t.Errorf("%q: %v", name, err)
		}
	}
	// A nested repository's data, at any depth and in any case, is not the work tree; a hard
	// link is its target's content.
	got, err := readTree(tarOf(t, tar.Header{Name: "sub/.git/config", Typeflag: tar.TypeReg, Linkname: "[core]"}, tar.Header{Name: "x/.GIT", Typeflag: tar.TypeReg, Linkname: "gitdir: /"},
		tar.Header{Name: "a", Typeflag: tar.TypeReg, Linkname: "same"}, tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}))
	if err != nil || len(got) != 2 || string(got["b"].Content) != "same" {
		t.Errorf("read: %v %v", got, err)
	}
	// The encoded patch is checked as well: exactly one diff per change, no copy or rename.
	if err := checkPatch([]byte("diff --git a/x b/x\ncopy from .env\n"), 1); err == nil {
		t.Error("a copy line passed the patch check")
	}
	if err := checkPatch([]byte("diff --git a/x b/x\ndiff --git a/y b/y\n"), 1); err == nil {
		t.Error("an extra file diff passed the patch check")
	}
}
