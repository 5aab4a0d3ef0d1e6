package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationTheRecordCannotBeReachedFromASession attacks sourceosctl's own state — the
// signing key that makes a bundle trustworthy and the evidence it signed — every way a
// profile or a command line can name it, and then from inside a session, and checks that
// the bundle recorded first still verifies afterwards.
func TestIntegrationTheRecordCannotBeReachedFromASession(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != 0 {
		t.Fatalf("first session: exit %d: %s", code, errOut)
	}
	keys := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys")
	evidenceDir := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
	bundles, err := evidence.List(evidenceDir)
	if err != nil || len(bundles) != 1 {
		t.Fatalf("evidence after the first session: %v %v", bundles, err)
	}
	bundle := bundles[0]
	sessionLog := filepath.Join(evidenceDir, "log")
	if _, err := os.Stat(filepath.Join(sessionLog, "state.json")); err != nil {
		t.Fatalf("the first session left no session log: %v", err)
	}
	if err := os.Symlink(keys, filepath.Join(w.repo, "keys-link")); err != nil {
		t.Fatal(err)
	}

	mountProfile := func(t *testing.T, source string) string {
		p := filepath.Join(t.TempDir(), "p.yaml")
		body, _ := os.ReadFile(w.profile)
		extra := fmt.Sprintf("  mounts:\n    - {source: %q, target: /k, allowProtected: true}\n", source)
		if err := os.WriteFile(p, append(body, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	attempts := []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{"the key directory as the repository", func(*testing.T) []string { return []string{"--repo", keys} }, "(sourceosctl's configuration"},
		{"the evidence directory as the repository", func(*testing.T) []string { return []string{"--repo", evidenceDir} }, "(sourceosctl's state"},
		{"a bundle as the repository", func(*testing.T) []string { return []string{"--repo", bundle} }, "(sourceosctl's state"},
		{"the session log as the repository", func(*testing.T) []string { return []string{"--repo", sessionLog} }, "(sourceosctl's state"},
		{"the session log as a mount, with both opt-ins", func(t *testing.T) []string {
			return []string{"--profile", mountProfile(t, sessionLog), "--repo", w.repo, "--allow-protected", sessionLog}
		}, "nothing can allow it"},
		{"a hard link in the repository to the session log's state", func(t *testing.T) []string {
			link := filepath.Join(w.repo, "not-a-log")
			_ = os.Remove(link)
			if err := os.Link(filepath.Join(sessionLog, "state.json"), link); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Remove(link) })
			return []string{"--repo", w.repo}
		}, "is a hard link to " + filepath.Join(sessionLog, "state.json")},
		{"the state directory's parent as the repository", func(*testing.T) []string {
			return []string{"--repo", filepath.Join(w.home, ".local", "state")}
		}, "[parent-of-protected-path]"},
		{"the key directory as a mount, with both opt-ins", func(t *testing.T) []string {
			return []string{"--profile", mountProfile(t, keys), "--repo", w.repo, "--allow-protected", keys}
		}, "nothing can allow it"},
		{"the evidence directory as a mount, with both opt-ins", func(t *testing.T) []string {
			return []string{"--profile", mountProfile(t, evidenceDir), "--repo", w.repo, "--allow-protected", evidenceDir}
		}, "nothing can allow it"},
		{"a symlink in the repository to the keys, as a mount", func(t *testing.T) []string {
			return []string{"--profile", mountProfile(t, filepath.Join(w.repo, "keys-link")), "--repo", w.repo}
		}, "sourceosctl's"},
		{"a hard link in the repository to the signing key", func(t *testing.T) []string {
			link := filepath.Join(w.repo, "not-a-key")
			_ = os.Remove(link)
			if err := os.Link(filepath.Join(keys, "evidence.key"), link); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Remove(link) })
			return []string{"--repo", w.repo}
		}, "is a hard link to " + filepath.Join(keys, "evidence.key")},
	}
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			args := a.args(t)
			if !slices.Contains(args, "--profile") {
				args = append([]string{"--profile", w.profile}, args...)
			}
			// --profile is global; the rest belong to shell.
			global, local := args[:2], args[2:]
			for _, dry := range []bool{true, false} {
				f, out, errOut := sessionFactory(t, e, w, nil)
				full := append(append(append([]string{}, global...), "am", "shell"), local...)
				if dry {
					full = append(full, "--dry-run")
				}
				full = append(full, "--", "sh", "-c", "echo TOOL-RAN")
				code := run(t, f, full...)
				if code != ExitRefused || !strings.Contains(errOut.String(), a.want) || strings.Contains(out.String(), "TOOL-RAN") {
					t.Fatalf("dry run %v: exit %d, want %d naming %q\nstdout:\n%s\nstderr:\n%s", dry, code, ExitRefused, a.want, out, errOut)
				}
			}
			if names := sessionContainers(t, e); len(names) != 0 {
				t.Errorf("containers left behind: %v", names)
			}
		})
	}

	t.Run("from inside a session, nothing of the record is there", func(t *testing.T) {
		f, out, errOut := sessionFactory(t, e, w, nil)
		script := `find / \( -name evidence.key -o -name attestation.sigstore.json -o -name 'sourceos-helper-*' \) -print 2>/dev/null; ` +
			`ls -A "$HOME"; echo DONE`
		if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if got := strings.TrimSpace(out.String()); got != "DONE" {
			t.Errorf("the session found part of the record, or a non-empty home:\n%s", got)
		}
	})
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "am", "evidence", "verify", bundle, "--key", filepath.Join(keys, "evidence.pub")); code != 0 {
		t.Fatalf("the first bundle no longer verifies: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestIntegrationAHardLinkToAProtectedFileRefusesTheSession links the workspace's canary SSH
// key into the repository, deep in a directory, and expects the dry run and the real run to
// refuse alike, naming both paths, with nothing started.
func TestIntegrationAHardLinkToAProtectedFileRefusesTheSession(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	link := filepath.Join(w.repo, "vendor", "pkg", "testdata", "fixture.bin")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(w.canary, link); err != nil {
		t.Fatal(err)
	}
	want := link + " is a hard link to " + w.canary
	for _, dry := range []string{"--dry-run", ""} {
		f, out, errOut := sessionFactory(t, e, w, nil)
		args := []string{"--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "cat /workspace/vendor/pkg/testdata/fixture.bin"}
		if dry != "" {
			args = append(args[:4:4], append([]string{dry}, args[4:]...)...)
		}
		if code := run(t, f, args...); code != ExitRefused || !strings.Contains(errOut.String(), want) {
			t.Fatalf("%q: exit %d, want %d naming %q\nstderr:\n%s", dry, code, ExitRefused, want, errOut)
		}
		if strings.Contains(out.String(), "canary") {
			t.Fatalf("%q: the key's content was read:\n%s", dry, out)
		}
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left behind: %v", names)
	}
	// A copy is a different file: that session runs.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != 0 {
		t.Fatalf("after replacing the link with a copy: exit %d: %s", code, errOut)
	}
}

// TestIntegrationAFileSystemMountedInTheRepositoryStaysOutside mounts a tmpfs holding a
// secret below the repository: the session's bind is not recursive, so the container sees
// the empty directory it is mounted on.
func TestIntegrationAFileSystemMountedInTheRepositoryStaysOutside(t *testing.T) {
	e := podmantest.Need(t)
	if os.Getuid() != 0 {
		t.Skip("mounting a file system needs root (CI runs as root)")
	}
	w := newWorkspace(t, e, "")
	sub := filepath.Join(w.repo, "mnt")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", sub).Run() })
	if err := os.WriteFile(filepath.Join(sub, "token"), []byte("mounted-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "ls -A /workspace/mnt; cat /workspace/mnt/token 2>&1; echo END"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out.String(), "mounted-secret") || !strings.Contains(out.String(), "No such file") {
		t.Fatalf("the file system mounted in the repository reached the container:\n%s", out)
	}
}
