package policy_test

import (
	"context"
	"errors"
	"fmt"
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

// manyFiles writes n empty files below dir, 100 to a directory: a tree large enough that the
// side of the check that settles it first cancels the other mid-walk.
func manyFiles(t *testing.T, dir string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("d%03d", i/100)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("d%03d", i/100), fmt.Sprintf("f%05d", i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAHardLinkCheckSettledByEitherSideIsNoError makes each side in turn the one with no
// linked file while the other is larger and holds links, both walked from the start: the
// settled side cancels the other mid-walk, and that must be neither an error nor a refusal.
func TestAHardLinkCheckSettledByEitherSideIsNoError(t *testing.T) {
	defer policy.SetProtectedHeadStart(0)()
	for _, large := range []string{"protected", "repository"} {
		t.Run(large, func(t *testing.T) {
			h, home, prof := linkHome(t)
			if large == "protected" { // a browser profile with a linked file, linked outside every mount
				manyFiles(t, filepath.Join(home, ".mozilla"), 2_000)
				write(t, filepath.Join(home, ".mozilla/zz/key4.db"), "k")
				link(t, filepath.Join(home, ".mozilla/zz/key4.db"), filepath.Join(home, "backup/key4.db"))
				write(t, filepath.Join(home, "dev/app/a"), "a")
			} else { // links within a large repository; no protected file has a second name
				manyFiles(t, filepath.Join(home, "dev/app/node_modules"), 2_000)
				write(t, filepath.Join(home, "dev/app/zz/a"), "a")
				link(t, filepath.Join(home, "dev/app/zz/a"), filepath.Join(home, "dev/app/zz/b"))
				write(t, filepath.Join(home, ".ssh/id_ed25519"), "k")
			}
			for i := 0; i < 20; i++ {
				if r := hardLinks(t, h, home, prof); len(r) != 0 {
					t.Fatalf("refused: %+v", r)
				}
			}
		})
	}
}

// TestHardLinkRefusalsReadTheSameEveryTime links one protected inode (with two protected
// names) five times and three others once into the repository: every run names every link,
// each to the protected name first by path, in the same order.
func TestHardLinkRefusalsReadTheSameEveryTime(t *testing.T) {
	h, home, prof := linkHome(t)
	key := filepath.Join(home, ".ssh/z_key")
	write(t, key, "k")
	link(t, key, filepath.Join(home, ".ssh/a_copy"))
	for _, n := range []string{"e", "b", "d", "a", "c"} {
		link(t, key, filepath.Join(home, "dev/app", n, n))
	}
	for _, n := range []string{"k3", "k1", "k2"} {
		write(t, filepath.Join(home, ".aws", n), n)
		link(t, filepath.Join(home, ".aws", n), filepath.Join(home, "dev/app/aws", n))
	}
	var first string
	for i := 0; i < 20; i++ {
		r := hardLinks(t, h, home, prof)
		if len(r) != 1 {
			t.Fatalf("refusals = %+v, want one for the repository", r)
		}
		if i > 0 {
			if r[0].Reason != first {
				t.Fatalf("the reason changed between runs:\n%s\n%s", first, r[0].Reason)
			}
			continue
		}
		first = r[0].Reason
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			if want := filepath.Join(home, "dev/app", n, n) + " is a hard link to " + filepath.Join(home, ".ssh/a_copy"); !strings.Contains(first, want) {
				t.Errorf("want %q in %s", want, first)
			}
		}
		for _, n := range []string{"k1", "k2", "k3"} {
			if want := filepath.Join(home, "dev/app/aws", n) + " is a hard link to " + filepath.Join(home, ".aws", n); !strings.Contains(first, want) {
				t.Errorf("want %q in %s", want, first)
			}
		}
	}
}

// TestHardLinksWithinAnOptedInProtectedMount mounts ~/.aws on purpose (allowProtected in the
// profile and on the command line): a second name for its credentials inside it is what the
// user chose to share, but a name for an SSH key is not.
func TestHardLinksWithinAnOptedInProtectedMount(t *testing.T) {
	h, home, _ := linkHome(t)
	aws := filepath.Join(home, ".aws")
	write(t, filepath.Join(aws, "credentials"), "aws")
	link(t, filepath.Join(aws, "credentials"), filepath.Join(aws, "credentials.bak"))
	prof := mustProfile(t, "  mounts:\n    - {source: \""+aws+"\", target: /aws, readOnly: true, allowProtected: true}\n")
	d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app"), AllowProtected: []string{aws}}, h)
	if err := d.Err(); err != nil {
		t.Fatalf("the opted-in mount was refused: %v", err)
	}
	if r, err := policy.HardLinks(context.Background(), d, h); err != nil || len(r) != 0 {
		t.Fatalf("a link within the opted-in mount: %+v, %v", r, err)
	}
	key := filepath.Join(home, ".ssh/id_ed25519")
	write(t, key, "ssh key")
	link(t, key, filepath.Join(aws, "id"))
	r, err := policy.HardLinks(context.Background(), d, h)
	if err != nil || len(r) != 1 || r[0].Subject != "mount "+aws || !strings.Contains(r[0].Reason, filepath.Join(aws, "id")+" is a hard link to "+key) ||
		strings.Contains(r[0].Reason, "credentials") {
		t.Fatalf("refusals = %+v, %v; want the SSH key's name refused alone", r, err)
	}
}
