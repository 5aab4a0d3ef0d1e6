package helper_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/guard"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

// TestIntegrationTheHelperSeesWhatInspectCannot runs the real helper in real containers
// weakened one way each — the way a server's configuration, or a runtime that ignores a
// setting, would leave them — and checks that it refuses, naming the field, from the kernel's
// own view, and never runs the command.
func TestIntegrationTheHelperSeesWhatInspectCannot(t *testing.T) {
	e := podmantest.Need(t)
	path := installHelper(t)
	want := guard.Expectation{Nonce: "it", UID: 1000, GID: 1000, Groups: []int{1000},
		Env:      map[string]string{"container": "podman", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/agent"},
		EnvNames: []string{"HOSTNAME", "TERM"}, Mounts: []string{container.HelperTarget, "/tmp"},
		Hostname: "sourceos-agent", Umask: 0o022, Interfaces: []string{"lo"}}
	hardened := hardenedArgs(e, path)
	runHelper := func(extra ...string) (string, error) {
		base := hardened
		if len(extra) > 0 && extra[0] == "--uts" {
			base = removeFlag(base, "--hostname") // Podman refuses a hostname in the host's namespace
		}
		args := append(append(append([]string{}, base...), extra...), "--entrypoint", container.HelperTarget, podmantest.Image,
			"check", want.Encode(), "--", "echo", "COMMAND-RAN")
		return e.Podman(args...)
	}
	t.Run("as planned: the command runs", func(t *testing.T) {
		out, err := runHelper()
		if err != nil || !strings.Contains(out, "COMMAND-RAN") {
			t.Fatalf("the hardened container was refused: %v\n%s", err, out)
		}
	})
	// The tool runs under the helper's seccomp filter: no AF_VSOCK socket, a channel to the
	// hypervisor that the container's network namespace does not close. Without the helper
	// the runtime's default profile allows one (found by a probe).
	t.Run("vsock is refused to the tool", func(t *testing.T) {
		direct, _ := e.Podman(append(append([]string{}, hardened...), "--entrypoint", container.HelperTarget, podmantest.Image, "__probe-vsock")...)
		t.Logf("without the helper's filter: %s", strings.TrimSpace(direct))
		out, err := e.Podman(append(append([]string{}, hardened...), "--entrypoint", container.HelperTarget, podmantest.Image,
			"check", want.Encode(), "--", container.HelperTarget, "__probe-vsock")...)
		if err != nil || !strings.Contains(out, "vsock: address family not supported by protocol") {
			t.Fatalf("under the helper: %v\n%s", err, out)
		}
	})
	weakenings := []struct {
		name, want string
		flags      []string
	}{
		{"seccomp unconfined", "seccomp mode is 0", []string{"--security-opt", "seccomp=unconfined"}},
		{"a capability", "capabilities CapEff are", []string{"--cap-add", "NET_BIND_SERVICE"}},
		{"new privileges allowed", "no-new-privileges is 0", []string{"--security-opt", "no-new-privileges=false"}},
		{"a host directory", "mount /hostetc", []string{"--volume", "/etc:/hostetc:ro"}},
		{"a device", "device /dev/fuse was not planned", []string{"--device", "/dev/fuse"}},
		{"an environment variable", "environment variable LD_PRELOAD was not planned", []string{"--env", "LD_PRELOAD=/x.so"}},
		{"a changed variable", "environment variable HOME has another value", []string{"--env", "HOME=/root"}},
		{"the host's UTS namespace", `hostname is "`, []string{"--uts", "host"}},
		{"a permissive umask", "umask is 0000 (want 0022)", []string{"--umask", "0000"}},
		{"ICMP sockets", "unprivileged ICMP sockets are allowed", []string{"--sysctl", "net.ipv4.ping_group_range=0 2147483647"}},
		{"a supplementary group", "supplementary group 5 was not planned", []string{"--group-add", "5"}},
		{"another user", "user is 1001:1001 (want 1000:1000)", []string{"--user", "1001:1001"}},
	}
	for _, w := range weakenings {
		t.Run(w.name, func(t *testing.T) {
			out, err := runHelper(w.flags...)
			if err == nil || strings.Contains(out, "COMMAND-RAN") {
				t.Fatalf("the weakened container ran the command (err %v):\n%s", err, out)
			}
			if !strings.Contains(err.Error(), "sourceos-helper: refused it: ") || !strings.Contains(err.Error(), w.want) {
				t.Fatalf("want a refusal naming %q, got %v", w.want, err)
			}
		})
	}
}

// installHelper writes the helper for this architecture where a container can mount it.
func installHelper(t *testing.T) string {
	t.Helper()
	bin, err := helper.Binary(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sourceos-helper")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// hardenedArgs are a session's container settings, as `podman run` flags, with the helper
// mounted: no network but loopback, all capabilities dropped, read-only root.
func hardenedArgs(e *podmantest.Env, helperPath string) []string {
	args := []string{"run", "--rm", "--init", "--user", "1000:1000", "--userns", "", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false", "--network", "none",
		"--hostname", "sourceos-agent", "--umask", "0022", "--env", "HOME=/home/agent",
		"--sysctl", "net.ipv4.ping_group_range=1 0",
		"--tmpfs", "/tmp:rw,nosuid,nodev,size=1m,mode=1777", "--mount", "type=bind,source=" + helperPath + ",destination=" + container.HelperTarget + ",ro=true"}
	if e.User == "" && os.Getuid() == 0 {
		return removeUserns(args)
	}
	return setUserns(args, "keep-id")
}

// A real-time priority limit is not among the cases: the runtime cannot raise it above the
// service's own hard limit (0 here), so such a container never starts; inspect refuses it
// (internal/container, and the weakened-server session test).

func removeUserns(args []string) []string { return removeFlag(args, "--userns") }

func removeFlag(args []string, flag string) []string {
	for i, a := range args {
		if a == flag {
			return append(append([]string{}, args[:i]...), args[i+2:]...)
		}
	}
	return args
}

func setUserns(args []string, mode string) []string {
	for i, a := range args {
		if a == "--userns" {
			args[i+1] = mode
		}
	}
	return args
}
