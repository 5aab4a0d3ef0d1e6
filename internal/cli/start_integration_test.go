package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationStartSpawnsTheAPIServiceAndStatusSeesIt runs start with no API socket up:
// it must start `podman system service` itself (no systemd here), status must then reach it,
// and a second start must leave it alone. It runs as an unprivileged user with its own
// runtime directory, so no system socket is touched.
func TestIntegrationStartSpawnsTheAPIServiceAndStatusSeesIt(t *testing.T) {
	podmantest.Need(t)
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Log("systemd manages this host: start will use podman.socket, not spawn the service")
	}
	user := os.Getenv("SOURCEOSCTL_TEST_USER")
	if os.Getuid() == 0 && user == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER so start is tested without touching /run/podman")
		}
		t.Skip("as root, start would use /run/podman/podman.sock; set SOURCEOSCTL_TEST_USER to test it as that user")
	}
	if os.Getuid() != 0 {
		user = ""
	}
	pe, err := podmantest.StartAs(user)
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Close()
	bin := filepath.Join(pe.Dir, "sourceosctl")
	copyFile(t, os.Args[0], bin, 0o755)
	home := filepath.Join(pe.Dir, "home")
	runtime := filepath.Join(pe.Dir, "xdg-start")
	for _, d := range []string{home, runtime} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if user != "" {
			chownTree(t, d, pe.UID, pe.GID)
		}
	}
	// The spawned service gets storage of its own: sharing the harness service's storage
	// with another temporary directory is a database mismatch Podman refuses.
	storage := filepath.Join(home, "storage.conf")
	body := "[storage]\ndriver = \"overlay\"\ngraphroot = \"" + filepath.Join(home, "graph") + "\"\nrunroot = \"" + filepath.Join(runtime, "run") + "\"\n"
	if err := os.WriteFile(storage, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, int) {
		full := append([]string{asCLI + "=1", "HOME=" + home, "XDG_RUNTIME_DIR=" + runtime, "XDG_STATE_HOME=" + filepath.Join(home, "state"),
			"CONTAINERS_STORAGE_CONF=" + storage, "CONTAINER_HOST=", bin}, args...)
		cmd := pe.Command("env", full...)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	socket := filepath.Join(runtime, "podman", "podman.sock")
	out, code := cli("am", "start", "--dry-run")
	if code != 0 || !strings.Contains(out, "would run podman system service --time=0 unix://"+socket) {
		t.Fatalf("start --dry-run: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(socket); err == nil {
		t.Fatal("the dry run created the socket")
	}
	out, code = cli("am", "start")
	if code != 0 || !strings.Contains(out, "Started the Podman API at unix://"+socket) {
		t.Fatalf("start: exit %d:\n%s", code, out)
	}
	pidFile := filepath.Join(home, "state", "sourceos", "agent-machine", "podman-service.pid")
	defer func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	out, code = cli("am", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	var st agentmachine.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if !st.Connection.Reachable || st.Connection.URI != "unix://"+socket || st.Connection.Source != "rootless socket" {
		t.Errorf("status connection = %+v", st.Connection)
	}
	validateAgainst(t, "agent-machine-status.schema.json", []byte(out))
	out, code = cli("am", "start")
	if code != 0 || !strings.Contains(out, "already up at unix://"+socket) {
		t.Errorf("second start: exit %d:\n%s", code, out)
	}
}

func TestIntegrationStatusListsRunningSessions(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	name := waitForSession(t, e)
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "status"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{name, "shell", w.repo, "Image       localhost/sourceosctl-test/agent:latest: present"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	f, out, _ = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "stop", "--dry-run"); code != 0 || !strings.Contains(out.String(), "would stop and remove "+name) {
		t.Fatalf("stop --dry-run: exit %d:\n%s", code, out)
	}
	if names := sessionContainers(t, e); len(names) != 1 {
		t.Fatalf("the dry run changed the sessions: %v", names)
	}
	f, out, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "stop"); code != 0 || !strings.Contains(out.String(), "stopped "+name) {
		t.Fatalf("stop: exit %d:\n%s%s", code, out, errOut)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left after stop: %v", names)
	}
}

// TestIntegrationStatusAndStopFindAKilledSessionsContainer: sourceosctl killed (SIGKILL)
// mid-session cannot clean up; its container, once stopped, is listed by status as left
// behind (it said "none running") and removed by stop.
func TestIntegrationStatusAndStopFindAKilledSessionsContainer(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := waitForSession(t, e)
	_ = cmd.Process.Kill() // SIGKILL: no clean-up
	_ = cmd.Wait()
	if _, err := e.Podman("stop", "-t", "0", name); err != nil {
		t.Fatal(err)
	}
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "status"); code != 0 || !strings.Contains(out.String(), name) || !strings.Contains(out.String(), "1 stopped: left behind") {
		t.Errorf("status: exit %d, want %s listed as left behind:\n%s%s", code, name, out, errOut)
	}
	f, out, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "stop", "--dry-run"); code != 0 || !strings.Contains(out.String(), "would remove (exited) "+name) {
		t.Errorf("stop --dry-run: exit %d:\n%s%s", code, out, errOut)
	}
	f, out, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "stop"); code != 0 {
		t.Fatalf("stop: exit %d:\n%s%s", code, out, errOut)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left after stop: %v", names)
	}
}
