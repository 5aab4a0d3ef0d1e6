package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkWorkspaceJoin compares, on one running workspace: `sourceosctl agent-machine exec
// -- true` (the whole process: profile, re-plan, inspect and compare, exec sessions and root
// file system checked, the helper's check inside, exec, evidence signed) with raw `podman
// exec` of the same container; the same exec with a cold session (`shell -- true`, which
// creates and removes a container); and `ssh sourceos-NAME -- true` through the ProxyCommand
// (ssh's handshake, sourceosctl's SSH server, then the same join) with raw `podman exec`.
func BenchmarkWorkspaceJoin(b *testing.B) {
	env := podmantest.Need(b)
	w := newWorkspace(b, env, "")
	name := "bench"
	ctr := agentmachine.WorkspaceContainer(name)
	cli := func(args ...string) error {
		cmd := cliProcess(b, env, w, append([]string{"--profile", w.profile, "am"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w\n%s", args, err, out)
		}
		return nil
	}
	if err := cli("up", "--repo", w.repo, "--name", name); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cli("rm", name, "--yes") })
	join := func() error { return cli("exec", "--name", name, "--", "true") }
	rawExec := func() error {
		_, err := env.Podman("exec", ctr, "true")
		return err
	}
	b.Run("exec-vs-podman-exec", func(b *testing.B) { abCompare(b, join, rawExec, "ms-podman-exec") })
	b.Run("exec-vs-cold-session", func(b *testing.B) {
		other := newWorkspace(b, env, "") // its own repository: shell there does not join
		cold := func() error {
			cmd := cliProcess(b, env, other, "--profile", other.profile, "am", "shell", "--repo", other.repo, "--", "true")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%w\n%s", err, out)
			}
			return nil
		}
		abCompare(b, join, cold, "ms-cold-session")
	})
	if _, err := exec.LookPath("ssh"); err != nil {
		b.Skip("no ssh client")
	}
	f, out, errOut := sessionFactory(b, env, w, nil)
	if code := run(b, f, "--profile", w.profile, "am", "ssh-config", name); code != 0 {
		b.Fatalf("ssh-config: %s", errOut)
	}
	config := filepath.Join(b.TempDir(), "config")
	if err := os.WriteFile(config, out.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	sshEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.home, asCLI + "=1", "CONTAINER_HOST=" + env.URI}
	viaSSH := func() error {
		cmd := exec.Command("ssh", "-F", config, agentmachine.SSHHost(name), "--", "true")
		cmd.Env = sshEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ssh: %w\n%s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	b.Run("ssh-vs-podman-exec", func(b *testing.B) { abCompare(b, viaSSH, rawExec, "ms-podman-exec") })
}

// BenchmarkWorkspaceIDE compares, on a workspace serving the IDE (the harness's stand-in for
// code-server, which serves the workspace's files): a request on a new connection through
// up --ide's proxy (token cookie checked, then a join — re-plan, inspect and compare, the
// helper's check inside — and the helper's connect relay) with raw `podman exec … wget` of the
// same file inside the container (no check, no relay). The stand-in (busybox httpd) closes
// every connection after its answer, so each request here is a relay of its own; code-server
// keeps connections, which the proxy pools (up to 8 idle), so a browser pays this per
// connection, not per request.
func BenchmarkWorkspaceIDE(b *testing.B) {
	env := podmantest.Need(b)
	w := newWorkspace(b, env, "")
	if err := os.WriteFile(filepath.Join(w.repo, "index.html"), []byte("workbench\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if os.Getuid() == 0 {
		_ = os.Chown(filepath.Join(w.repo, "index.html"), 1000, 1000)
	}
	ref := ideTestImage(b, env)
	body, err := os.ReadFile(w.profile)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(w.profile, bytes.Replace(body, []byte("ref: "+podmantest.Image), []byte("ref: "+ref), 1), 0o644); err != nil {
		b.Fatal(err)
	}
	srv := serveIDEInBackground(b, env, w, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "idebench", "--ide")
	b.Cleanup(func() {
		srv.stop(b)
		_ = cliProcess(b, env, w, "--profile", w.profile, "am", "rm", "idebench", "--yes").Run()
	})
	jar, _ := cookiejar.New(nil)
	if _, err := (&http.Client{Jar: jar}).Get(srv.url); err != nil {
		b.Fatal(err)
	}
	fetch := func(c *http.Client) func() error {
		return func() error {
			resp, err := c.Get("http://127.0.0.1:" + srv.port + "/index.html")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(got) != "workbench\n" {
				return fmt.Errorf("status %d, %q", resp.StatusCode, got)
			}
			return nil
		}
	}
	newConn := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	raw := func() error {
		out, err := env.Podman("exec", agentmachine.WorkspaceContainer("idebench"), "wget", "-q", "-O-", "http://127.0.0.1:13337/index.html")
		if err != nil || out != "workbench\n" {
			return fmt.Errorf("raw: %v %q", err, out)
		}
		return nil
	}
	b.Run("new-connection-vs-podman-exec", func(b *testing.B) { abCompare(b, fetch(newConn), raw, "ms-podman-exec") })
}
