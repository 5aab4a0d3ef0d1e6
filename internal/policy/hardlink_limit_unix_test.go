//go:build unix

package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
)

// TestAHardLinkWalkCutShortIsAnError lowers the process's open-file limit: no test in this
// package runs in parallel with it. It runs the check with no file descriptor left to open a
// directory: a walk that could not look is an error (the session refuses to start), never
// "no linked file".
func TestAHardLinkWalkCutShortIsAnError(t *testing.T) {
	h, home, prof := linkHome(t)
	write(t, filepath.Join(home, ".ssh/id_ed25519"), "key")
	link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/sub/id"))
	d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	low := was
	low.Cur = 0 // no new descriptor: the next open fails with EMFILE
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	r, err := policy.HardLinks(context.Background(), d, h)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, syscall.EMFILE) || len(r) != 0 {
		t.Fatalf("HardLinks = %+v, %v; want EMFILE", r, err)
	}
}

// deepTree makes below dir a chain of directories whose path is longer than PATH_MAX (4096
// bytes), made relative to each other: a walk that opens directories by path fails there
// with ENAMETOOLONG.
func deepTree(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 200)
	for i := 0; i < 22; i++ {
		if err := syscall.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := syscall.Openat(fd, name, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		syscall.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	syscall.Close(fd)
}

// TestOneSideOfTheHardLinkCheckCutShortIsAnError cuts one side's walk short (a tree deeper
// than PATH_MAX) while the other finds a link: the error is the answer, never the comparison
// of what the cut-short side had seen by then.
func TestOneSideOfTheHardLinkCheckCutShortIsAnError(t *testing.T) {
	for _, side := range []string{"protected", "repository"} {
		t.Run(side, func(t *testing.T) {
			h, home, prof := linkHome(t)
			write(t, filepath.Join(home, ".ssh/id_ed25519"), "key")
			link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/id"))
			if side == "protected" {
				deepTree(t, filepath.Join(home, ".mozilla"))
			} else {
				deepTree(t, filepath.Join(home, "dev/app/build"))
			}
			d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
			r, err := policy.HardLinks(context.Background(), d, h)
			if !errors.Is(err, syscall.ENAMETOOLONG) || len(r) != 0 {
				t.Fatalf("HardLinks = %+v, %v; want ENAMETOOLONG", r, err)
			}
		})
	}
}
