//go:build unix

package policy_test

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
)

// TestAHardLinkWalkCutShortIsAnError runs the check with no file descriptor left to open a
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
