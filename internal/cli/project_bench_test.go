package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkProjectTest times test (a test.yaml of one command, detected and run in a session
// on the repository's copy) against the raw podman run of the same command with the
// repository bind-mounted (the session's own -o podman line, --direct).
func BenchmarkProjectTest(b *testing.B) {
	env := podmantest.Need(b)
	w := newWorkspace(b, env, "")
	if err := os.MkdirAll(filepath.Join(w.repo, ".sourceos"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.repo, ".sourceos", "test.yaml"), []byte("version: 1\ncommand: \"true\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if os.Getuid() == 0 {
		chownTree(b, w.repo, 1000, 1000)
	}
	podmanLine := dryRunLine(b, env, w, "--direct")
	tool := func() error {
		cmd := cliProcess(b, env, w, "--profile", w.profile, "am", "test", "--repo", w.repo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w:\n%s", err, out)
		}
		return nil
	}
	raw := func() error {
		cmd := exec.Command("sh", "-c", podmanLine)
		cmd.Env = append(os.Environ(), env.ConfEnv...)
		return cmd.Run()
	}
	abCompare(b, tool, raw, "ms-podman-run")
}

// BenchmarkProjectServe times a request on a new connection to a served dev server (busybox
// httpd in a workspace), relayed by serve, against raw `podman exec … wget` of the same page
// inside the container.
func BenchmarkProjectServe(b *testing.B) {
	env := podmantest.Need(b)
	w := newWorkspace(b, env, "")
	if err := os.WriteFile(filepath.Join(w.repo, "index.html"), []byte("served\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if os.Getuid() == 0 {
		chownTree(b, w.repo, 1000, 1000)
	}
	port := strconv.Itoa(freePort(b))
	if code := cliProcess(b, env, w, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "servebench").Run(); code != nil {
		b.Fatalf("up: %v", code)
	}
	b.Cleanup(func() { _ = cliProcess(b, env, w, "--profile", w.profile, "am", "rm", "servebench", "--yes").Run() })
	srv := serveInBackground(b, env, w, regexp.MustCompile(`Serving \S+ on this host only: http://127\.0\.0\.1:([0-9]+)/`),
		"--profile", w.profile, "am", "serve", "--repo", w.repo, "--port", port, "--", "httpd", "-f", "-p", "0.0.0.0:"+port, "-h", "/workspace")
	b.Cleanup(func() { srv.stop(b) })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	fetch := func() error {
		resp, err := client.Get("http://127.0.0.1:" + port + "/index.html")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(got) != "served\n" {
			return fmt.Errorf("status %d, %q", resp.StatusCode, got)
		}
		return nil
	}
	raw := func() error {
		out, err := env.Podman("exec", agentmachine.WorkspaceContainer("servebench"), "wget", "-q", "-O-", "http://127.0.0.1:"+port+"/index.html")
		if err != nil || out != "served\n" {
			return fmt.Errorf("raw: %v %q", err, out)
		}
		return nil
	}
	b.Run("new-connection-vs-podman-exec", func(b *testing.B) { abCompare(b, fetch, raw, "ms-podman-exec") })
}
