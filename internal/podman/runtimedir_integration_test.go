package podman_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podman"
)

// testUser is the unprivileged account the rootless tests run as (see scripts/ci-test-user.sh).
func testUser(t *testing.T) (name string, uid int) {
	t.Helper()
	name = os.Getenv("SOURCEOSCTL_TEST_USER")
	switch {
	case os.Getuid() != 0 && os.Getenv("CI") != "true":
		t.Skip("needs root, to run Podman as SOURCEOSCTL_TEST_USER")
	case name == "" && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER (see scripts/ci-test-user.sh)")
	case name == "":
		t.Skip("set SOURCEOSCTL_TEST_USER to an unprivileged user with subuid ranges")
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	return name, uid
}

// TestIntegrationRuntimeDirMatchesPodman pins the runtime directory resolution to Podman's
// own answer (`podman info`'s remote socket) for the same user and environment, one variant
// of the environment at a time — set, unset, stale, symlinked, someone else's — and where
// Podman cannot run, the resolver refuses too.
func TestIntegrationRuntimeDirMatchesPodman(t *testing.T) {
	name, uid := testUser(t)
	base, err := os.MkdirTemp("", "sosctl-rtd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(path string, mode os.FileMode, owner int) string {
		t.Helper()
		if err := os.MkdirAll(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, owner, owner); err != nil {
			t.Fatal(err)
		}
		return path
	}
	conf := filepath.Join(base, "containers.conf")
	if err := os.WriteFile(conf, []byte("[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runUser := fmt.Sprintf("/run/user/%d", uid)
	_, runUserErr := os.Stat(runUser)
	type variant struct {
		name  string
		setup func(dir string) map[string]string // returns the environment
		// serviceFails: Podman answers info but cannot serve its API there.
		serviceFails bool
	}
	variants := []variant{
		{name: "XDG_RUNTIME_DIR set, yours", setup: func(d string) map[string]string {
			return map[string]string{"XDG_RUNTIME_DIR": mk(filepath.Join(d, "xdg"), 0o700, uid)}
		}},
		{name: "XDG_RUNTIME_DIR a symlink to yours", setup: func(d string) map[string]string {
			real := mk(filepath.Join(d, "xdg"), 0o700, uid)
			link := filepath.Join(d, "link")
			_ = os.Symlink(real, link)
			return map[string]string{"XDG_RUNTIME_DIR": link}
		}},
		{name: "XDG_RUNTIME_DIR someone else's", setup: func(d string) map[string]string {
			return map[string]string{"XDG_RUNTIME_DIR": mk(filepath.Join(d, "roots"), 0o700, 0)}
		}},
		{name: "XDG_RUNTIME_DIR stale, not creatable", setup: func(d string) map[string]string {
			return map[string]string{"XDG_RUNTIME_DIR": filepath.Join(mk(filepath.Join(d, "locked"), 0o755, 0), "gone")}
		}, serviceFails: true},
		{name: "XDG_RUNTIME_DIR stale, creatable", setup: func(d string) map[string]string {
			return map[string]string{"XDG_RUNTIME_DIR": filepath.Join(mk(filepath.Join(d, "open"), 0o777, 0), "new")}
		}},
		{name: "XDG_RUNTIME_DIR unset: $TMPDIR/podman-run-UID", setup: func(d string) map[string]string {
			return map[string]string{"TMPDIR": mk(filepath.Join(d, "tmp"), 0o777, 0)}
		}},
		{name: "XDG_RUNTIME_DIR unset: your podman-run-UID with a wider mode", setup: func(d string) map[string]string {
			tmp := mk(filepath.Join(d, "tmp"), 0o777, 0)
			mk(filepath.Join(tmp, fmt.Sprintf("podman-run-%d", uid)), 0o755, uid)
			return map[string]string{"TMPDIR": tmp}
		}},
		{name: "XDG_RUNTIME_DIR unset: someone else's podman-run-UID, no $HOME/rundir", setup: func(d string) map[string]string {
			tmp := mk(filepath.Join(d, "tmp"), 0o777, 0)
			mk(filepath.Join(tmp, fmt.Sprintf("podman-run-%d", uid)), 0o700, 0)
			return map[string]string{"TMPDIR": tmp}
		}},
		{name: "XDG_RUNTIME_DIR unset: someone else's podman-run-UID, $HOME/rundir", setup: func(d string) map[string]string {
			tmp := mk(filepath.Join(d, "tmp"), 0o777, 0)
			mk(filepath.Join(tmp, fmt.Sprintf("podman-run-%d", uid)), 0o700, 0)
			mk(filepath.Join(d, "home", "rundir"), 0o700, uid)
			return map[string]string{"TMPDIR": tmp}
		}},
	}
	if os.IsNotExist(runUserErr) {
		variants = append(variants, variant{name: "XDG_RUNTIME_DIR unset: /run/user/UID made by a session manager", setup: func(d string) map[string]string {
			mk(runUser, 0o700, uid)
			t.Cleanup(func() { _ = os.RemoveAll(runUser) })
			return map[string]string{"TMPDIR": mk(filepath.Join(d, "tmp"), 0o777, 0)}
		}})
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			d := mk(filepath.Join(base, strconv.Itoa(i)), 0o755, 0)
			home := mk(filepath.Join(d, "home"), 0o755, uid)
			env := v.setup(d)
			env["HOME"], env["PATH"], env["CONTAINERS_CONF"] = home, "/usr/sbin:/usr/bin:/sbin:/bin", conf
			podmanSays, podmanErr := podmanAs(name, env, "info", "--format", "{{.Host.RemoteSocket.Path}}")
			defer killProcessesOf(uid, d)
			tmp := env["TMPDIR"]
			if tmp == "" {
				tmp = "/tmp"
			}
			got, err := podman.ResolveRuntimeDir(podman.RuntimeEnv{UID: uid, Getenv: func(k string) string { return env[k] },
				Stat: os.Stat, EvalSymlinks: filepath.EvalSymlinks, Owner: podman.FileOwner, TempDir: tmp})
			switch {
			case podmanErr != nil && err == nil:
				t.Fatalf("Podman cannot run here (%v) but the resolver answered %+v", podmanErr, got)
			case podmanErr != nil:
				t.Logf("both refuse: Podman %v; resolver: %v", podmanErr, err)
			case v.serviceFails:
				if err == nil || !strings.Contains(err.Error(), env["XDG_RUNTIME_DIR"]) {
					t.Fatalf("resolver %+v %v: want a refusal naming %s", got, err, env["XDG_RUNTIME_DIR"])
				}
				if _, svcErr := podmanAs(name, env, "system", "service", "--time=1"); svcErr == nil {
					t.Fatalf("Podman served its API in %s although the resolver said it cannot", env["XDG_RUNTIME_DIR"])
				}
			case err != nil:
				t.Fatalf("Podman uses %s but the resolver refused: %v", podmanSays, err)
			case got.Socket() != podmanSays:
				t.Fatalf("resolver %s (%s), Podman %s", got.Socket(), got.Why, podmanSays)
			}
		})
	}
}

// podmanAs runs podman as user with exactly env and returns its trimmed standard output.
func podmanAs(user string, env map[string]string, args ...string) (string, error) {
	argv := []string{"-u", user, "--", "env", "-i"}
	for k, v := range env {
		argv = append(argv, k+"="+v)
	}
	cmd := exec.Command("runuser", append(append(argv, "podman"), args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// killProcessesOf kills uid's processes whose environment names a path under dir — the
// pause processes a rootless podman leaves behind — so no process outlives the test, and
// no process of another test is touched.
func killProcessesOf(uid int, dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		st, err := os.Stat(p)
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
			continue
		}
		environ, err := os.ReadFile(filepath.Join(p, "environ"))
		if err != nil || !strings.Contains(string(environ), "="+dir+"/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
