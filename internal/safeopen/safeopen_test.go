//go:build unix

package safeopen

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRegular: a regular file opens with its size; a symbolic link (even to a regular file),
// a FIFO (which would block a plain open) and a directory are refused.
func TestRegular(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, size, err := Regular(file)
	if err != nil || size != 5 {
		t.Fatalf("a regular file: %v, size %d", err, size)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello" {
		t.Errorf("read %q", b)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{link: "symbolic link", fifo: "not a regular file", dir: "not a regular file"} {
		if f, _, err := Regular(path); err == nil || !strings.Contains(err.Error(), want) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}

// TestReadFile: a regular file within the bound is read whole; a larger one is refused with
// its size, as is a FIFO (without blocking).
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(file, 5); err != nil || string(b) != "hello" {
		t.Errorf("within the bound: %q %v", b, err)
	}
	var tooLarge *TooLargeError
	if _, err := ReadFile(file, 4); !errors.As(err, &tooLarge) || tooLarge.Size != 5 {
		t.Errorf("over the bound: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(fifo, 5); err == nil {
		t.Error("a FIFO was read")
	}
}
