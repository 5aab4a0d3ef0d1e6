package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationEvidenceFallsBackWhenItsDirectoryIsUnusable: the profile's evidence dir
// cannot be created (a file is in the way); the session still leaves a verified bundle, in
// the default evidence directory, and says where.
func TestIntegrationEvidenceFallsBackWhenItsDirectoryIsUnusable(t *testing.T) {
	e := podmantest.Need(t)
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorkspace(t, e, "  evidence:\n    dir: "+filepath.Join(blocker, "evidence")+"\n")
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	fallback := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
	if !strings.Contains(errOut.String(), "cannot write evidence to "+filepath.Join(blocker, "evidence")) || !strings.Contains(errOut.String(), "writing it to "+fallback) {
		t.Errorf("no warning naming both directories:\n%s", errOut)
	}
	dir := bundleFrom(t, errOut.String())
	if filepath.Dir(dir) != fallback {
		t.Errorf("bundle in %s, want it in %s", dir, fallback)
	}
	verifyBundle(t, w, dir)
}

// TestIntegrationEightConcurrentSessions: eight sessions at once on one repository get eight
// containers and eight bundles that all verify, with no clash.
func TestIntegrationEightConcurrentSessions(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	const n = 8
	var wg sync.WaitGroup
	dirs := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", fmt.Sprintf("echo %d > /workspace/s%d.txt", i, i))
			var stderr safeBuffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("session %d: %v\n%s", i, err, stderr.String())
				return
			}
			for _, line := range strings.Split(stderr.String(), "\n") {
				if d, ok := strings.CutPrefix(line, "evidence: "); ok {
					dirs[i] = d
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if dirs[i] == "" || seen[dirs[i]] {
			t.Fatalf("session %d: bundle %q missing or shared", i, dirs[i])
		}
		seen[dirs[i]] = true
		p := verifyBundle(t, w, dirs[i])
		if p.Session.Outcome != "succeeded" {
			t.Errorf("session %d: %+v", i, p.Session)
		}
		if b, err := os.ReadFile(filepath.Join(w.repo, fmt.Sprintf("s%d.txt", i))); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(i) {
			t.Errorf("session %d's file: %q %v", i, b, err)
		}
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left: %v", names)
	}
	// Eight processes appended to one session log at once: it holds each bundle once.
	if code, out := verifyLog(t, w); code != 0 || !strings.Contains(out, "8 entries under the latest signed checkpoint") || !strings.Contains(out, "8 bundle directories") {
		t.Errorf("the session log after eight concurrent sessions: exit %d\n%s", code, out)
	}
}

// TestIntegrationRepositoryDeletedMidSession: the repository disappears while the tool
// runs; the session still ends, the container is removed, and the bundle records that the
// repository could not be read afterwards.
func TestIntegrationRepositoryDeletedMidSession(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "2")
	cmd.Dir = w.home
	var stderr safeBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSession(t, e)
	if err := os.RemoveAll(w.repo); err != nil {
		t.Fatal(err)
	}
	signalAndWait(t, cmd, nil, stderr.String)
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
	p := verifyBundle(t, w, bundleFrom(t, stderr.String()))
	if p.Git.Before.Commit == "" || p.Git.After.Absent == "" {
		t.Errorf("git before %+v, after %+v: want a commit before and the reason it is absent after", p.Git.Before, p.Git.After)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left: %v", names)
	}
}

// TestIntegrationServiceKilledDuringASession: the Podman service dies while the tool runs.
// sourceosctl reports the failure, removes the container through the podman CLI (no
// orphan), and still writes the bundle, which says the session failed.
func TestIntegrationServiceKilledDuringASession(t *testing.T) {
	podmantest.Need(t)
	own, err := podmantest.Start() // a service of its own: this test kills it
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	w := newWorkspace(t, own, "")
	cmd := cliProcess(t, own, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "300")
	cmd.Env = append(cmd.Env, own.ConfEnv...) // the CLI fallback must see the same storage
	var stderr safeBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSession(t, own)
	own.KillService()
	signalAndWait(t, cmd, nil, stderr.String)
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit 0 after the service died:\n%s", stderr.String())
	}
	if out, _ := own.Podman("ps", "-a", "--filter", "label=dev.sourceos.agent-machine.managed=true", "--format", "{{.Names}}"); strings.TrimSpace(out) != "" {
		t.Errorf("orphaned container: %s\nstderr:\n%s", out, stderr.String())
	}
	p := verifyBundle(t, w, bundleFrom(t, stderr.String()))
	if p.Session.Outcome != "failed" || !p.Session.Ran {
		t.Errorf("session = %+v", p.Session)
	}
}

// TestIntegrationEvidenceOnAFullFilesystem puts the evidence dir on a 64 KiB tmpfs filled to
// the brim: the bundle cannot be written there and goes to the fallback, with a warning.
func TestIntegrationEvidenceOnAFullFilesystem(t *testing.T) {
	e := podmantest.Need(t)
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root; TestIntegrationEvidenceFallsBackWhenItsDirectoryIsUnusable covers the fallback")
	}
	full := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", full).Run()
	_ = os.WriteFile(filepath.Join(full, "filler"), make([]byte, 1<<20), 0o644) // fills it (ENOSPC expected)
	w := newWorkspace(t, e, "  evidence:\n    dir: "+filepath.Join(full, "evidence")+"\n")
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut.String(), "cannot write evidence to "+filepath.Join(full, "evidence")) {
		t.Errorf("no warning:\n%s", errOut)
	}
	verifyBundle(t, w, bundleFrom(t, errOut.String()))
}

// TestIntegrationUnusableKeyOrNoAPINeverStartsASession: no container is created when the
// session could not be recorded (signing key unreadable) or has no Podman to run on.
func TestIntegrationUnusableKeyOrNoAPINeverStartsASession(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	keyDir := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys")
	if err := os.MkdirAll(filepath.Join(keyDir, "evidence.key"), 0o700); err != nil { // a directory where the key should be
		t.Fatal(err)
	}
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != ExitFailure ||
		!strings.Contains(errOut.String(), "cannot sign this session's evidence, so it was not started") {
		t.Errorf("unreadable key: exit %d:\n%s", code, errOut)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("a session started without a usable key: %v", names)
	}
	f, _, errOut = sessionFactory(t, e, w, map[string]string{"CONTAINER_HOST": "unix://" + filepath.Join(w.home, "dead.sock")})
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != ExitMissing ||
		!strings.Contains(errOut.String(), "cannot reach the Podman API at unix://"+filepath.Join(w.home, "dead.sock")) {
		t.Errorf("no API: exit %d:\n%s", code, errOut)
	}
}
