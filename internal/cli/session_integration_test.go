package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// workspace is a fake home with a repository and a canary secret beside it.
type workspace struct {
	home, repo, profile string
	canary              string
}

const testSecretValue = "canary-secret-8f14e45fceea167a5a36dedd4bea2543"

func newWorkspace(t testing.TB, e *podmantest.Env, extraSpec string) *workspace {
	t.Helper()
	home := t.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &workspace{home: home, repo: filepath.Join(home, "dev", "app"), profile: filepath.Join(home, "profile.yaml")}
	for _, d := range []string{w.repo, filepath.Join(home, ".ssh")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.canary = filepath.Join(home, ".ssh", "id_canary")
	if err := os.WriteFile(w.canary, []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Rootful CI: the session runs as the repository's owner, so give it to a normal uid,
	// who must be able to reach it (sourceosctl runs git in it as them).
	if os.Getuid() == 0 {
		for d := filepath.Dir(home); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(w.repo, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	body := fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata:
  name: it
spec:
  host:
    os: linux
  image:
    ref: %s
  tools:
    codex:
      enabled: true
      secrets: [api-key]
    claude-code:
      enabled: false
    custom:
      - name: keycheck
        enabled: true
        command: [sh, -c, 'printf %%s "$API_KEY" | sha256sum']
        secrets: [api-key]
  secrets:
    - name: api-key
      fromEnv: TEST_API_KEY
      target: API_KEY
  resources:
    cpus: 1
    memoryMiB: 256
    pids: 64
%s`, podmantest.Image, extraSpec)
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// sessionFactory is a factory wired to the harness's service through CONTAINER_HOST.
func sessionFactory(t testing.TB, e *podmantest.Env, w *workspace, extraEnv map[string]string) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	f, out, errOut := testFactory(t)
	vars := map[string]string{"CONTAINER_HOST": e.URI, "TEST_API_KEY": testSecretValue}
	for k, v := range extraEnv {
		vars[k] = v
	}
	f.Getenv = func(k string) string { return vars[k] }
	f.Home = func() (string, error) { return w.home, nil }
	f.WorkDir = func() (string, error) { return w.repo, nil }
	f.UID, f.GID = os.Getuid(), os.Getgid()
	f.Now = time.Now
	f.Stat, f.Engine = os.Stat, memoised(podmanEngine)
	return f, out, errOut
}

func sessionContainers(t *testing.T, e *podmantest.Env) []string {
	t.Helper()
	out, err := e.Podman("ps", "-a", "--filter", "label=dev.sourceos.agent-machine.managed=true", "--format", "{{.Names}}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

func TestIntegrationSecurityInvariantsFromInside(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, out, errOut := sessionFactory(t, e, w, nil)
	script := `
echo "uid=$(id -u)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status
touch /rootfs-probe 2>/dev/null && echo "root=writable" || echo "root=read-only"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max | sed 's/^/pids=/'
(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes) | sed 's/^/mem=/'
echo written-inside > /workspace/from-container.txt && echo "repo=writable"
echo "canary=$(find / -xdev -name id_canary 2>/dev/null; find / -path /proc -prune -o -name id_canary -print 2>/dev/null)"
echo "home=$HOME"; touch "$HOME/x" && echo "homedir=writable"
mount | grep -E ' /workspace | /tmp | /home/agent ' | sed 's/^/mount=/'
`
	code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got := out.String()
	for _, want := range []string{
		"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "root=read-only", "net=lo \n", "pids=64", "mem=268435456",
		"repo=writable", "canary=\n", "home=/home/agent", "homedir=writable",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inside the container: want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "uid=0") {
		t.Errorf("the session ran as root:\n%s", got)
	}
	if b, err := os.ReadFile(filepath.Join(w.repo, "from-container.txt")); err != nil || string(b) != "written-inside\n" {
		t.Errorf("file written in the repo mount is not on the host: %q, %v", b, err)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left behind: %v", names)
	}
}

func TestIntegrationExitCodePropagates(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	for _, code := range []int{0, 1, 7, 42} {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if got := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", fmt.Sprintf("exit %d", code)); got != code {
			t.Errorf("shell -- exit %d: sourceosctl exited %d (%s)", code, got, errOut)
		}
	}
}

func TestIntegrationRunToolWithSandboxOff(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "codex", "--repo", w.repo, "--", "exec", "hi"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"tool=codex", "argv=--sandbox danger-full-access exec hi", "uid=1000"} {
		if !strings.Contains(out.String(), want) && !(want == "uid=1000" && os.Getuid() != 0) {
			t.Errorf("want %q in stub output:\n%s", want, out)
		}
	}
}

func TestIntegrationDisabledToolIsRefusedWithoutAContainer(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "claude-code", "--repo", w.repo); code != ExitRefused {
		t.Fatalf("exit %d, want %d: %s", code, ExitRefused, errOut)
	}
	if !strings.Contains(errOut.String(), `tool "claude-code" is not enabled in profile it (enabled: codex, keycheck)`) {
		t.Errorf("stderr does not list the enabled tools:\n%s", errOut)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("a refused session created containers: %v", names)
	}
}

func TestIntegrationSecretsDoor(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	sum := sha256.Sum256([]byte(testSecretValue))
	wantHash := hex.EncodeToString(sum[:])

	t.Run("all three opt-ins deliver it as an env var", func(t *testing.T) {
		f, out, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "keycheck", "--repo", w.repo, "--secret", "api-key"); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out.String(), wantHash) {
			t.Errorf("the tool did not receive the secret's value (want sha256 %s):\n%s", wantHash, out)
		}
		assertNoSecret(t, "session output", out.String()+errOut.String())
	})
	t.Run("without --secret the tool gets nothing", func(t *testing.T) {
		f, out, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "codex", "--repo", w.repo); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if strings.Contains(out.String(), "API_KEY") {
			t.Errorf("API_KEY reached the tool without --secret:\n%s", out)
		}
	})
	refusals := []struct {
		name, want string
		args       []string
	}{
		{"not declared", `secret "other" is not declared`, []string{"run", "--tool", "codex", "--secret", "other"}},
		{"the shell gets none", "the shell receives no secrets", []string{"shell", "--secret", "api-key"}},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			f, _, errOut := sessionFactory(t, e, w, nil)
			args := append([]string{"--profile", w.profile, "am"}, append(r.args, "--repo", w.repo)...)
			if code := run(t, f, args...); code != ExitRefused || !strings.Contains(errOut.String(), r.want) {
				t.Errorf("exit %d, stderr %s; want exit 3 and %q", code, errOut, r.want)
			}
		})
	}
	t.Run("--keep with --secret is refused", func(t *testing.T) {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "keycheck", "--repo", w.repo, "--secret", "api-key", "--keep"); code != ExitUsage {
			t.Fatalf("exit %d, want %d: %s", code, ExitUsage, errOut)
		}
		if names := sessionContainers(t, e); len(names) != 0 {
			t.Errorf("containers created: %v", names)
		}
	})
	t.Run("value absent from dry runs", func(t *testing.T) {
		for _, o := range []string{"table", "json", "podman"} {
			f, out, errOut := sessionFactory(t, e, w, nil)
			if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "keycheck", "--repo", w.repo, "--secret", "api-key", "--dry-run", "-o", o); code != 0 {
				t.Fatalf("-o %s: exit %d: %s", o, code, errOut)
			}
			if !strings.Contains(out.String(), "API_KEY") {
				t.Errorf("-o %s does not show the secret's env var name:\n%s", o, out)
			}
			assertNoSecret(t, "dry run -o "+o, out.String()+errOut.String())
		}
		if secrets, _ := e.Podman("secret", "ls", "--format", "{{.Name}}"); strings.TrimSpace(secrets) != "" {
			t.Errorf("ephemeral secrets left after the sessions: %s", secrets)
		}
	})
}

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	if strings.Contains(text, testSecretValue) {
		t.Errorf("the secret's value appears in %s", where)
	}
}

func TestIntegrationDryRunPodmanLineRunsAnEquivalentContainer(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "podman", "--", "sh", "-c", "id -u; grep NoNewPrivs /proc/self/status; ls /sys/class/net"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	line := strings.TrimSpace(out.String())
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Fatalf("the dry run created containers: %v", names)
	}
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = append(os.Environ(), e.ConfEnv...)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the printed line failed: %v\n%s\nline: %s", err, got, line)
	}
	want := "NoNewPrivs:\t1\nlo\n"
	if !strings.HasSuffix(string(got), want) || strings.HasPrefix(string(got), "0\n") {
		t.Errorf("the printed podman run gave:\n%s\nwant a non-root uid then %q", got, want)
	}
}

// cliProcess starts the test binary as sourceosctl.
func cliProcess(t testing.TB, e *podmantest.Env, w *workspace, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1", "CONTAINER_HOST="+e.URI, "HOME="+w.home, "XDG_CONFIG_HOME="+filepath.Join(w.home, ".config"))
	cmd.Dir = w.repo
	return cmd
}

func waitForSession(t *testing.T, e *podmantest.Env) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := e.Podman("ps", "--filter", "label=dev.sourceos.agent-machine.managed=true", "--filter", "status=running", "--format", "{{.Names}}")
		if name := strings.TrimSpace(out); name != "" {
			return name
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no session container started within 30s")
	return ""
}

// signalAndWait signals the process and waits (a bounded time) for it to exit.
func signalAndWait(t *testing.T, cmd *exec.Cmd, sig os.Signal, stderr func() string) {
	t.Helper()
	if sig != nil {
		_ = cmd.Process.Signal(sig)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("sourceosctl did not exit within 60s of %v; stderr:\n%s", sig, stderr())
	}
}

func TestIntegrationSignalsStopAndRemoveTheContainer(t *testing.T) {
	e := podmantest.Need(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			w := newWorkspace(t, e, "")
			cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "300")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitForSession(t, e)
			signalAndWait(t, cmd, tt.sig, stderr.String)
			if got := cmd.ProcessState.ExitCode(); got != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", got, tt.code, stderr.String())
			}
			if names := sessionContainers(t, e); len(names) != 0 {
				t.Errorf("container left after %v: %v", tt.sig, names)
			}
		})
	}
}

// TestIntegrationCtrlCInATerminal runs `shell -- sleep` on a real pseudo-terminal: the
// terminal is put in raw mode, Ctrl-C travels to the container's tty and ends sleep there,
// and the container is removed.
func TestIntegrationCtrlCInATerminal(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	// The container prints a marker once it runs: the attach put the terminal into raw mode
	// before the container was started, so from then on Ctrl-C travels as a byte.
	cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "echo session-is-ready; exec sleep 300")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen safeBuffer
	go func() { _, _ = io.Copy(&screen, tty) }()
	name := waitForSession(t, e)
	if inspect, _ := e.Podman("inspect", "--format", "{{.Config.Tty}}", name); strings.TrimSpace(inspect) != "true" {
		t.Errorf("session container has no TTY (Config.Tty=%s)", inspect)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(screen.String(), "session-is-ready") {
		if time.Now().After(deadline) {
			t.Fatalf("the container never printed its marker; screen:\n%s", screen.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := tty.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	signalAndWait(t, cmd, nil, screen.String)
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d, want 130 (sleep killed by SIGINT in the container); screen:\n%s", code, screen.String())
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("container left after Ctrl-C: %v", names)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIntegrationAnInterruptedToolsOwnExitCodeIsRecorded interrupts a tool that handles the
// graceful stop itself (it traps SIGTERM and exits 42): the stop request must survive the
// interrupt that asked for it, and the evidence must carry 42, not a guess.
func TestIntegrationAnInterruptedToolsOwnExitCodeIsRecorded(t *testing.T) {
	e := podmantest.Need(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			w := newWorkspace(t, e, "")
			cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--",
				"sh", "-c", `trap 'echo cleaning-up; exit 42' TERM; echo ready; while :; do sleep 0.1; done`)
			var stdout, stderr safeBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitForSession(t, e)
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(stdout.String(), "ready") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			signalAndWait(t, cmd, sig, stderr.String)
			if strings.Contains(stderr.String(), "! stop container") || !strings.Contains(stdout.String(), "cleaning-up") {
				t.Errorf("the graceful stop did not reach the tool:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			}
			p := lastPredicate(t, w)
			if p.Session.ExitCode == nil || *p.Session.ExitCode != 42 || !p.Session.Interrupted || p.Session.Cause != signalName(sig) {
				got := "none"
				if p.Session.ExitCode != nil {
					got = fmt.Sprint(*p.Session.ExitCode)
				}
				t.Errorf("evidence: exit code %s, interrupted %v, cause %q; want 42, true, %s", got, p.Session.Interrupted, p.Session.Cause, signalName(sig))
			}
			if names := sessionContainers(t, e); len(names) != 0 {
				t.Errorf("container left: %v", names)
			}
		})
	}
}

func signalName(sig syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
}
