package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
)

// TestHardLinksOnAnOverlayOfTwoFileSystems puts the home on an overlay whose lower layer is
// another file system than its upper one (a live system: squashfs under tmpfs). Such an
// overlay reports its directories on its own device and each file on its layer's, so a
// protected file's own device differs from the repository's: links to a protected file and
// to a file below a protected directory must both still be found.
func TestHardLinksOnAnOverlayOfTwoFileSystems(t *testing.T) {
	fail := t.Skipf
	if os.Getenv("CI") == "true" { // CI runs the suite as root: the case must be made there
		fail = t.Fatalf
	}
	if os.Getuid() != 0 {
		fail("mounting an overlay needs root")
	}
	base := t.TempDir()
	lower, upper, work, home := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "home")
	for _, d := range []string{lower, upper, work, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("none", lower, "tmpfs", 0, ""); err != nil {
		fail("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(lower, syscall.MNT_DETACH) })
	if err := syscall.Mount("overlay", home, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		fail("mount an overlay: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(home, syscall.MNT_DETACH) })
	for _, d := range []string{"dev/app", "dev/docs", ".ssh"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(home, ".git-credentials"), "https://u:token@example.com")
	write(t, filepath.Join(home, ".ssh/id_ed25519"), "key")
	link(t, filepath.Join(home, ".git-credentials"), filepath.Join(home, "dev/app/creds"))
	link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/id"))
	var dir, file syscall.Stat_t
	if err := syscall.Lstat(home, &dir); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(home, "dev/app/id"), &file); err != nil {
		t.Fatal(err)
	}
	if dir.Dev == file.Dev {
		fail("this kernel's overlay reports one device for files and directories (xino): the case cannot be made here")
	}
	h := policy.Host{OS: "linux", Home: home}
	d := policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	r, err := policy.HardLinks(context.Background(), d, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 || !strings.Contains(r[0].Reason, "creds is a hard link to "+filepath.Join(home, ".git-credentials")) ||
		!strings.Contains(r[0].Reason, "id is a hard link to "+filepath.Join(home, ".ssh/id_ed25519")) {
		t.Fatalf("refusals = %+v, want one naming both links", r)
	}
}
