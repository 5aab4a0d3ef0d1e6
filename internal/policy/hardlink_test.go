package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// linkHome is a home with a repository and a read-only docs mount beside it, and sourceosctl's
// own state (its signing key) as the session's extra protected paths.
func linkHome(t *testing.T) (policy.Host, string, *profile.Profile) {
	t.Helper()
	home := t.TempDir()
	for _, d := range []string{"dev/app/src/deep", "dev/docs", ".config/sourceos/agent-machine/keys"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := policy.Host{OS: runtime.GOOS, Home: home, Extra: []policy.Protected{{
		Path: filepath.Join(home, ".config/sourceos/agent-machine"), What: "sourceosctl's configuration", Always: true}}}
	prof := mustProfile(t, "")
	prof.Spec.Mounts = append(prof.Spec.Mounts, profile.Mount{Source: filepath.Join(home, "dev/docs"), Target: "/docs", ReadOnly: true})
	return h, home, prof
}

func hardLinks(t *testing.T, h policy.Host, home string, prof *profile.Profile) []policy.Refusal {
	t.Helper()
	d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
	if err := d.Err(); err != nil {
		t.Fatalf("the mounts themselves were refused: %v", err)
	}
	refusals, err := policy.HardLinks(context.Background(), d, h)
	if err != nil {
		t.Fatal(err)
	}
	return refusals
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(newname), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(oldname, newname); err != nil {
		t.Fatal(err)
	}
}

// TestAHardLinkToEveryProtectedEntryIsRefused links a file of each protected entry under the
// home that applies to this OS — the entry itself as a file, and a file deep below it as a
// directory — into the repository, and expects a refusal naming both paths.
func TestAHardLinkToEveryProtectedEntryIsRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows reports no link counts: the plan says hard links are not checked there")
	}
	for _, p := range policy.ProtectedPaths {
		if !strings.HasPrefix(p.Path, "~/") || p.Exact || p.Bulky || (len(p.OS) > 0 && !slices.Contains(p.OS, runtime.GOOS)) {
			continue
		}
		for _, shape := range []string{"file", "below"} {
			t.Run(p.Path+"/"+shape, func(t *testing.T) {
				h, home, prof := linkHome(t)
				secret := filepath.Join(home, p.Path[2:])
				if shape == "below" {
					secret = filepath.Join(secret, "nested", "token")
				}
				write(t, secret, "secret")
				linked := filepath.Join(home, "dev/app/src/deep", "innocent.txt")
				link(t, secret, linked)
				r := hardLinks(t, h, home, prof)
				if len(r) != 1 || r[0].Rule != policy.RuleHardLink || !strings.HasPrefix(r[0].Subject, "repository ") ||
					!strings.Contains(r[0].Reason, linked+" is a hard link to "+secret) {
					t.Fatalf("refusals = %+v, want one naming %s and %s", r, linked, secret)
				}
			})
		}
	}
}

func TestHardLinksThatExposeNothingAreAllowed(t *testing.T) {
	h, home, prof := linkHome(t)
	write(t, filepath.Join(home, "dev/app/a.txt"), "a")
	link(t, filepath.Join(home, "dev/app/a.txt"), filepath.Join(home, "dev/app/src/b.txt")) // within the repository
	write(t, filepath.Join(home, "notes.txt"), "n")
	link(t, filepath.Join(home, "notes.txt"), filepath.Join(home, "dev/docs/notes.txt")) // an unprotected file
	// A protected file with a second name outside every mount: both walks find linked
	// files, and their inodes differ.
	write(t, filepath.Join(home, ".ssh/id_ed25519"), "ssh key")
	link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "backup/id_ed25519"))
	if err := os.Symlink(filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/key-link")); err != nil {
		t.Fatal(err) // a symlink resolves inside the container, where the target does not exist
	}
	if r := hardLinks(t, h, home, prof); len(r) != 0 {
		t.Fatalf("refused: %+v", r)
	}
}

func TestHardLinksInEveryMountAndToOwnState(t *testing.T) {
	h, home, prof := linkHome(t)
	key := filepath.Join(home, ".config/sourceos/agent-machine/keys/evidence.key")
	write(t, key, "signing key")
	write(t, filepath.Join(home, ".ssh/id_ed25519"), "ssh key")
	link(t, key, filepath.Join(home, "dev/docs/k"))
	link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/.git/objects/ab/cdef"))
	link(t, filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, "dev/app/id"))
	r := hardLinks(t, h, home, prof)
	if len(r) != 2 {
		t.Fatalf("refusals = %+v, want the repository and the docs mount", r)
	}
	all := r[0].Subject + " " + r[0].Reason + " | " + r[1].Subject + " " + r[1].Reason
	for _, want := range []string{"mount " + filepath.Join(home, "dev/docs"), "dev/docs/k is a hard link to " + key, "sourceosctl's configuration",
		"repository " + filepath.Join(home, "dev/app"), ".git/objects/ab/cdef is a hard link to", "dev/app/id is a hard link to"} {
		if !strings.Contains(all, want) {
			t.Errorf("want %q in %s", want, all)
		}
	}
}

// TestAHardLinkToASystemFileIsRefused links /etc/shadow's content (root only: the kernel's
// protected_hardlinks lets nobody else link a file they do not own).
func TestAHardLinkToASystemFileIsRefused(t *testing.T) {
	if os.Getuid() != 0 || runtime.GOOS != "linux" {
		t.Skip("only root can hard-link /etc/shadow (CI runs as root)")
	}
	h, home, prof := linkHome(t)
	linked := filepath.Join(home, "dev/app/shadow")
	if err := os.Link("/etc/shadow", linked); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must be able to link /etc/shadow into a temporary directory (same file system): %v", err)
		}
		t.Skipf("/etc is on another file system here: %v", err)
	}
	r := hardLinks(t, h, home, prof)
	if len(r) != 1 || !strings.Contains(r[0].Reason, linked+" is a hard link to /etc/shadow") {
		t.Fatalf("refusals = %+v", r)
	}
}

func TestHardLinksStopsWhenCancelled(t *testing.T) {
	h, home, prof := linkHome(t)
	write(t, filepath.Join(home, "dev/app/a"), "a")
	d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := policy.HardLinks(ctx, d, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
