// Package podmantest gives integration tests a throw-away Podman service: a test-only
// containers.conf (runc, cgroupfs, ulimits within the host's hard limits) selected with
// CONTAINERS_CONF, storage roots in a temporary directory, `podman system service` on a
// temporary socket, and a locally built test image (busybox plus stub claude and codex
// scripts). Nothing is pulled and the user's own Podman configuration is never read or
// written.
package podmantest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Image is the test image every Env holds.
const Image = "localhost/sourceosctl-test/agent:latest"

// Env is a running throw-away Podman service.
type Env struct {
	Dir    string // everything lives below it
	Socket string
	URI    string // unix://Socket
	// ConfEnv is the environment the podman CLI needs to share the service's configuration
	// and storage (CONTAINERS_CONF and friends).
	ConfEnv []string

	// User, when set, is the unprivileged account whose rootless service this is; UID and
	// GID are its ids.
	User     string
	UID, GID int

	globalArgs []string
	// home is the rootless user's HOME while running commands (its storage lives there):
	// Dir/home, or the Env it was derived from (Weakened).
	home    string
	service *exec.Cmd
	logPath string
}

// shared is the test binary's Env, started by Main: a test binary is one process running
// one package's tests, and they share one throw-away service.
var shared *Env

// Main is TestMain for packages with integration tests: it starts an Env (see Need), runs
// the tests and tears the Env down. Without podman the integration tests are skipped, except
// under CI=true, where a missing Podman is a failure.
func Main(m *testing.M) {
	env, err := Start()
	if err != nil {
		if os.Getenv("CI") == "true" || !errors.Is(err, ErrNoPodman) {
			fmt.Fprintf(os.Stderr, "podmantest: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "podmantest: %v; skipping integration tests (install podman, runc and busybox-static, or run .ci/run)\n", err)
		os.Exit(m.Run())
	}
	shared = env
	code := m.Run()
	env.Close()
	os.Exit(code)
}

// Need returns the package's throw-away Podman service, or skips the test when Podman is
// not installed — which Main only allows outside CI (under CI=true it fails first).
func Need(t testing.TB) *Env {
	t.Helper()
	if shared == nil {
		t.Skip("podman is not installed (CI=true makes this a failure)")
	}
	return shared
}

// Started reports whether Main started a service (benchmarks use it to skip quietly).
func Started() bool { return shared != nil }

// ErrNoPodman is returned by Start when podman or busybox is not installed.
var ErrNoPodman = errors.New("podman or busybox is not installed")

// Start sets up and starts an Env for the current user.
func Start() (*Env, error) { return StartAs("") }

// StartAs starts an Env whose service runs as user (rootless Podman), for root to prove the
// rootless path; "" means the current user.
func StartAs(user string) (*Env, error) {
	for _, tool := range []string{"podman", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found on PATH", ErrNoPodman, tool)
		}
	}
	// Socket paths are limited to ~108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "sosctl-pt-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the rootless test user needs to traverse it
		return nil, err
	}
	e := &Env{Dir: dir, Socket: filepath.Join(dir, "podman.sock"), logPath: filepath.Join(dir, "service.log"), User: user}
	e.URI = "unix://" + e.Socket
	if err := e.lookupUser(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.writeConfig(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.startService(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.buildImage(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// writeConfig writes the test-only containers.conf and storage.conf.
func (e *Env) writeConfig() error {
	nofile, nproc := hardLimit(syscall.RLIMIT_NOFILE, 4096), hardLimit(rlimitNproc, 4096)
	conf := fmt.Sprintf(`# Test-only Podman configuration written by podmantest.
[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%s"
`, nofile, nofile, nproc, nproc, filepath.Join(e.Dir, "events.log"))
	storage := fmt.Sprintf(`[storage]
driver = "overlay"
graphroot = "%s"
runroot = "%s"
`, filepath.Join(e.Dir, "root"), filepath.Join(e.Dir, "runroot"))
	confPath, storagePath := filepath.Join(e.Dir, "containers.conf"), filepath.Join(e.Dir, "storage.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(storagePath, []byte(storage), 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(e.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	e.ConfEnv = []string{
		"CONTAINERS_CONF=" + confPath,
		"CONTAINERS_STORAGE_CONF=" + storagePath,
		// Keep registries and policy from the user's files out of the picture.
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(e.Dir, "registries.conf"),
		"TMPDIR=" + tmp,
	}
	if e.User != "" {
		// The rootless service's own runtime directory, so it never touches the user's.
		runtime := filepath.Join(e.Dir, "xdg")
		if err := os.MkdirAll(runtime, 0o700); err != nil {
			return err
		}
		e.ConfEnv = append(e.ConfEnv, "XDG_RUNTIME_DIR="+runtime)
		defer e.chownAll()
	}
	e.globalArgs = []string{"--tmpdir", tmp}
	return os.WriteFile(filepath.Join(e.Dir, "registries.conf"), []byte("unqualified-search-registries = []\n"), 0o644)
}

func hardLimit(resource int, ceiling uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(resource, &lim); err != nil || lim.Max > ceiling {
		return ceiling
	}
	return lim.Max
}

// rlimitNproc is RLIMIT_NPROC, which package syscall does not name on Linux.
const rlimitNproc = 6

func (e *Env) startService() error {
	log, err := os.Create(e.logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append(append([]string{}, e.globalArgs...), "system", "service", "--time=0", e.URI)
	e.service = e.command("podman", args...)
	e.service.Stdout, e.service.Stderr = log, log
	e.service.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.service.Start(); err != nil {
		return fmt.Errorf("start podman system service: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(e.Socket); err == nil && st.Mode().Type() == os.ModeSocket {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	logText, _ := os.ReadFile(e.logPath)
	return fmt.Errorf("podman system service did not create %s within 30s; its log:\n%s", e.Socket, logText)
}

// Podman runs the podman CLI against the Env's storage and configuration.
func (e *Env) Podman(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command("podman", append(append([]string{}, e.globalArgs...), args...)...)
	cancelOnDone(ctx, cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Close removes every container and image and stops the service.
func (e *Env) Close() {
	_, _ = e.Podman("rm", "--all", "--force", "--time", "0")
	if e.service != nil && e.service.Process != nil {
		_ = syscall.Kill(-e.service.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.service.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-e.service.Process.Pid, syscall.SIGKILL)
		}
		_, _ = e.Podman("system", "reset", "--force")
	}
	_ = os.RemoveAll(e.Dir)
}

// StubTool is installed as /usr/local/bin/claude and /usr/local/bin/codex: it prints what it
// received so tests can assert on argv, uid and which environment variables (names only)
// reached it.
const StubTool = `#!/bin/sh
name=$(basename "$0")
if [ "$1" = "--version" ]; then echo "$name 0.0.0-stub (sourceosctl test image)"; exit 0; fi
echo "tool=$name"
echo "argv=$*"
echo "uid=$(id -u) gid=$(id -g)"
echo "env=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
# Like the real tools, it keeps a history in its state directory when it has one.
state="${CLAUDE_CONFIG_DIR:-$CODEX_HOME}"
for word; do last=$word; done
if [ -n "$state" ]; then echo "$last" >> "$state/history" && echo "history=$(tr '\n' '|' < "$state/history")"; fi
# plant:PATH leaves a symlink to PATH in the state directory, as a hostile agent would.
case "$last" in plant:*) ln -s "${last#plant:}" "$state/planted" && echo planted;; esac
exit "${STUB_EXIT:-0}"
`

// buildImage imports a root file system holding Debian's static busybox and the stub tools.
func (e *Env) buildImage() error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	applets, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode})
	}
	file := func(name string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))})
		_, _ = tw.Write(data)
	}
	for _, d := range []string{"bin", "etc", "home", "home/agent", "tmp", "usr", "usr/local", "usr/local/bin", "workspace", "proc", "sys", "dev", "run", "var", "var/tmp"} {
		mode := int64(0o755)
		if d == "tmp" || d == "var/tmp" {
			mode = 0o1777
		}
		dir(d, mode)
	}
	file("bin/busybox", 0o755, bin)
	for _, a := range strings.Fields(string(applets)) {
		if a != "busybox" {
			_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
		}
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n"))
	if err := addPrograms(tw, "usr"); err != nil {
		return err
	}
	file("usr/local/bin/claude", 0o755, []byte(StubTool))
	file("usr/local/bin/codex", 0o755, []byte(StubTool))
	if err := tw.Close(); err != nil {
		return err
	}
	archive := filepath.Join(e.Dir, "rootfs.tar")
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		return err
	}
	e.chownAll()
	if _, err := e.Podman("import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "--change", `CMD ["/bin/sh"]`, archive, Image); err != nil {
		return fmt.Errorf("build test image: %w", err)
	}
	return nil
}

// Command returns name with args prepared to run in the Env: as its user, with its
// configuration in the environment.
func (e *Env) Command(name string, args ...string) *exec.Cmd { return e.command(name, args...) }

func (e *Env) command(name string, args ...string) *exec.Cmd {
	envv := append(os.Environ(), e.ConfEnv...)
	if e.User == "" {
		cmd := exec.Command(name, args...)
		cmd.Env = envv
		return cmd
	}
	// runuser drops to the user; env re-applies the configuration, which runuser resets.
	home := e.home
	if home == "" {
		home = filepath.Join(e.Dir, "home")
	}
	full := append([]string{"-u", e.User, "--", "env", "HOME=" + home}, e.ConfEnv...)
	full = append(full, name)
	cmd := exec.Command("runuser", append(full, args...)...)
	cmd.Env = envv
	return cmd
}

func cancelOnDone(ctx context.Context, cmd *exec.Cmd) {
	go func() {
		<-ctx.Done()
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}()
}

func (e *Env) lookupUser() error {
	if e.User == "" {
		e.UID, e.GID = os.Getuid(), os.Getgid()
		return nil
	}
	if os.Getuid() != 0 {
		return fmt.Errorf("running Podman as %s needs root", e.User)
	}
	out, err := exec.Command("id", "-u", e.User).Output()
	if err != nil {
		return fmt.Errorf("test user %s: %w (create it with scripts/ci-test-user.sh)", e.User, err)
	}
	gout, err := exec.Command("id", "-g", e.User).Output()
	if err != nil {
		return err
	}
	fmt.Sscan(string(out), &e.UID)
	fmt.Sscan(string(gout), &e.GID)
	return os.MkdirAll(filepath.Join(e.Dir, "home"), 0o755)
}

// chownAll gives the Env's directory to its user.
func (e *Env) chownAll() {
	if e.User == "" {
		return
	}
	_ = filepath.Walk(e.Dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			_ = os.Lchown(p, e.UID, e.GID)
		}
		return nil
	})
}

// KillService kills the API service abruptly (SIGKILL), as a crash would.
func (e *Env) KillService() {
	if e.service != nil && e.service.Process != nil {
		_ = syscall.Kill(-e.service.Process.Pid, syscall.SIGKILL)
		_ = e.service.Wait()
		e.service = nil
	}
}

// addPrograms copies the host's git and curl and the shared libraries they load (as ldd
// lists them) into the image, so an agent in a test session can commit as a real one does and
// reach HTTPS through a proxy as real tools do (CONNECT). Tests never pull: this is how the
// test image gets real programs without a registry. existing are the directories the archive
// already holds (a tar with a path twice does not import).
func addPrograms(tw *tar.Writer, existing ...string) error {
	made := map[string]bool{}
	for _, d := range existing {
		made[d] = true
	}
	for _, prog := range []string{"git", "curl"} {
		bin, err := exec.LookPath(prog)
		if err != nil {
			return fmt.Errorf("%s is needed for the test image: %w", prog, err)
		}
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %w", bin, err)
		}
		files := []string{bin}
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					files = append(files, f)
				}
			}
		}
		for _, f := range files {
			name := strings.TrimPrefix(f, "/")
			if f == bin {
				name = "usr/bin/" + prog
			}
			if made[name] {
				continue // a library both programs load
			}
			real, err := filepath.EvalSymlinks(f)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(real)
			if err != nil {
				return err
			}
			for d := filepath.Dir(name); d != "." && !made[d]; d = filepath.Dir(d) {
				made[d] = true
				_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755})
			}
			made[name] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data))}); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	return nil
}
