package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// sshClient runs the real OpenSSH client against a workspace through the entry ssh-config
// wrote, whose ProxyCommand is this test binary acting as sourceosctl.
type sshClient struct {
	t      *testing.T
	config string
	env    []string
}

func (c *sshClient) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, append([]string{"-F", c.config}, args...)...)
	cmd.Env = c.env
	return cmd
}

func (c *sshClient) run(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.command(ctx, "ssh", args...).CombinedOutput()
	return string(out), err
}

// TestIntegrationWorkspaceSSH: the real OpenSSH client reaches a workspace through the host
// entry ssh-config --write adds: a command (its output and exit code), an interactive shell in
// tmux whose window size follows a resize, sftp put and get (a symlink planted in the
// workspace resolving inside the container, never on the host), ssh -L to a server listening
// on the container's loopback, and refusals: a port elsewhere, a unix socket, remote
// forwarding, agent forwarding, and a key that is not the workspace's.
func TestIntegrationWorkspaceSSH(t *testing.T) {
	e := podmantest.Need(t)
	for _, tool := range []string{"ssh", "sftp", "ssh-keygen", "ssh-agent", "tmux"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	cli := workspaceCLI(t, e, w, "edit")
	if code, _, stderr := cli("up", "--repo", w.repo, "--name", "edit"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	config := filepath.Join(w.home, ".ssh", "config")
	if err := os.WriteFile(config, []byte("Host other\n  HostName example.invalid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // twice: the entry is replaced, not added again
		if code, _, stderr := cli("ssh-config", "edit", "--write"); code != 0 {
			t.Fatalf("ssh-config --write: exit %d\n%s", code, stderr)
		}
	}
	written, _ := os.ReadFile(config)
	if strings.Count(string(written), "Host sourceos-edit\n") != 1 || !strings.HasPrefix(string(written), "Host other\n") || !strings.Contains(string(written), "ForwardAgent no") {
		t.Fatalf("~/.ssh/config after ssh-config --write twice:\n%s", written)
	}
	c := &sshClient{t: t, config: config, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.home, asCLI + "=1",
		"CONTAINER_HOST=" + e.URI, "TERM=xterm-256color"}}

	out, err := c.run("sourceos-edit", "--", "id -u; pwd; echo out; echo err >&2; exit 4")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 || !strings.Contains(out, "1000\n/workspace\nout\n") || !strings.Contains(out, "err") {
		t.Fatalf("ssh sourceos-edit -- …: %v\n%s", err, out)
	}
	if strings.Contains(out, "sourceos-helper: checked") {
		t.Errorf("the helper's verdict reached the client:\n%s", out)
	}

	// An interactive shell in tmux: its terminal has tmux's size, and follows a resize.
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tmux := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("tmux", append([]string{"-S", sock}, args...)...)
		cmd.Env = c.env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	tmux("new-session", "-d", "-s", "ws", "-x", "100", "-y", "30", "ssh -F "+config+" sourceos-edit")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", sock, "kill-server").Run() })
	waitPaneFor := func(want string, d time.Duration) (string, bool) {
		var pane string
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if pane = tmux("capture-pane", "-p", "-t", "ws"); strings.Contains(pane, want) {
				return pane, true
			}
		}
		return pane, false
	}
	waitPane := func(want string) string {
		t.Helper()
		pane, ok := waitPaneFor(want, 30*time.Second)
		if !ok {
			t.Fatalf("the shell never showed %q:\n%s", want, pane)
		}
		return pane
	}
	// Podman 4.3 drops a terminal size given before the exec runs, so the proxy gives it just
	// after: a command typed before the shell's prompt can run before it (stty then finds no
	// size). Wait for the prompt, then allow the size a moment to land.
	waitPane("/workspace $")
	for i := 0; ; i++ {
		tmux("send-keys", "-t", "ws", "echo size=$(stty size)", "Enter")
		if _, ok := waitPaneFor("size=30 100", 5*time.Second); ok {
			break
		}
		if i == 4 {
			waitPane("size=30 100") // fails, showing the pane
		}
	}
	tmux("resize-window", "-t", "ws", "-x", "120", "-y", "40")
	tmux("send-keys", "-t", "ws", "echo size=$(stty size) tty=$(tty)", "Enter")
	pane := waitPane("size=40 120")
	if !strings.Contains(pane, "tty=/dev/pts/") {
		t.Errorf("the shell has no terminal:\n%s", pane)
	}
	tmux("send-keys", "-t", "ws", "exit", "Enter")

	// sftp: put and get; a symlink to /etc planted in the workspace is the container's /etc.
	if out, err := c.run("sourceos-edit", "ln -s /etc /workspace/etc-link"); err != nil {
		t.Fatalf("plant a symlink: %v\n%s", err, out)
	}
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "up.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(local, "batch")
	if err := os.WriteFile(batch, []byte(fmt.Sprintf("put %s/up.txt /workspace/up.txt\nget /workspace/etc-link/hostname %s/hostname\nget /workspace/up.txt %s/back.txt\n", local, local, local)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	sftpOut, err := c.command(ctx, "sftp", "-b", batch, "sourceos-edit").CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, sftpOut)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "back.txt")); string(b) != "from the host\n" {
		t.Errorf("sftp put then get: %q", b)
	}
	hostName, _ := os.ReadFile("/etc/hostname")
	if b, _ := os.ReadFile(filepath.Join(local, "hostname")); strings.TrimSpace(string(b)) != "sourceos-agent" || string(b) == string(hostName) {
		t.Errorf("a symlink to /etc served %q (the container's is sourceos-agent; the host's %q)", b, hostName)
	}
	if out, err := c.run("sourceos-edit", "cat /workspace/up.txt; ls -ln /workspace/up.txt"); err != nil || !strings.Contains(out, "from the host") || !strings.Contains(out, " 1000 ") {
		t.Errorf("the file sftp put, seen inside: %v\n%s", err, out)
	}

	// ssh -L to a server on the container's loopback.
	if out, err := c.run("sourceos-edit", "echo served > /tmp/index.html && httpd -p 127.0.0.1:8080 -h /tmp"); err != nil {
		t.Fatalf("start a server inside: %v\n%s", err, out)
	}
	port := freePort(t)
	ctx, cancel = context.WithCancel(context.Background())
	fwd := c.command(ctx, "ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:8080", port), "sourceos-edit")
	var fwdOut strings.Builder
	fwd.Stdout, fwd.Stderr = &fwdOut, &fwdOut
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = fwd.Wait() }()
	body := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && body == ""; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
	}
	if body != "served\n" {
		t.Errorf("ssh -L to the container's port 8080: %q\n%s", body, fwdOut.String())
	}

	// Refused: a port elsewhere, a unix socket, remote forwarding, agent forwarding.
	for name, args := range map[string][]string{
		"a port elsewhere":  {"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:10.0.0.1:80", freePort(t)), "sourceos-edit", "true"},
		"a unix socket":     {"-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:/run/podman/podman.sock", freePort(t)), "sourceos-edit", "true"},
		"remote forwarding": {"-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22", "sourceos-edit", "true"},
	} {
		if name == "remote forwarding" {
			if out, err := c.run(args...); err == nil || !strings.Contains(out, "forwarding failed") {
				t.Errorf("%s was not refused: %v\n%s", name, err, out)
			}
			continue
		}
		// A local forward is refused when used: connect through it and see nothing arrive.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := c.command(ctx, "ssh", append([]string{"-N"}, args[:len(args)-1]...)...)
		var o strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &o
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		addr := strings.SplitN(args[3], ":", 3)
		got := ""
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			conn, err := net.Dial("tcp", addr[0]+":"+addr[1])
			if err != nil {
				continue
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(conn)
			conn.Close()
			got = string(b)
			break
		}
		cancel()
		_ = cmd.Wait()
		if got != "" || !strings.Contains(o.String(), "prohibited") && !strings.Contains(o.String(), "unsupported channel type") && !strings.Contains(o.String(), "open failed") {
			t.Errorf("%s: received %q\n%s", name, got, o.String())
		}
	}
	agentSock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", agentSock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(agentSock); err == nil {
			break
		}
	}
	ca := *c
	ca.env = append(append([]string{}, c.env...), "SSH_AUTH_SOCK="+agentSock)
	if out, err := ca.run("-A", "sourceos-edit", "echo agent=${SSH_AUTH_SOCK:-none}"); err != nil || !strings.Contains(out, "agent=none") {
		t.Errorf("ssh -A: %v\n%s", err, out)
	}

	// Another key is refused.
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	wrong := strings.Replace(string(written), filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "workspaces", "edit.ssh", "id_ed25519"), other, 1)
	wrongConfig := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(wrongConfig, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	cw := *c
	cw.config = wrongConfig
	if out, err := cw.run("-o", "BatchMode=yes", "sourceos-edit", "true"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("a key that is not the workspace's: %v\n%s", err, out)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
