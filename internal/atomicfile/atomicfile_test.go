package atomicfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "f")
	if err := atomicfile.Write(path, []byte("one"), 0o600, atomicfile.Options{NoClobber: true}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", st.Mode().Perm())
	}
	err := atomicfile.Write(path, []byte("two"), 0o600, atomicfile.Options{NoClobber: true})
	if !errors.Is(err, atomicfile.ErrExists) {
		t.Fatalf("second NoClobber write: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content = %q after a refused write", b)
	}
	if err := atomicfile.Write(path, []byte("three"), 0o644, atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "three" {
		t.Fatalf("content = %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d entries, want 1: temp files left behind", len(entries))
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	parent := filepath.Join(dir, "file")
	if err := os.WriteFile(parent, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(parent, "x"), []byte("x"), 0o600, atomicfile.Options{}); err == nil {
		t.Fatal("writing below a regular file succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries, want only the original file", len(entries))
	}
}
