package helper_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/guard"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// buildGateway builds cmd/sourceos-gateway, the gateway as a program of its own, for this
// machine's architecture.
func buildGateway(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sourceos-gateway")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/sourceos/sourceosctl/cmd/sourceos-gateway")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sourceos-gateway: %v\n%s", err, out)
	}
	return bin
}

// TestIntegrationGatewaySidecar runs the gateway where a Podman machine or a remote service
// needs it: as a container of its own next to the agent's (the only one with a network, and
// otherwise hardened), its socket in a Podman volume that the agent's container — no network
// but loopback — mounts read-only. Through the helper's forwarder, an allowed address answers
// and another is refused; stopped, the sidecar leaves a complete log that accounts for both.
func TestIntegrationGatewaySidecar(t *testing.T) {
	e := podmantest.Need(t)
	helperPath := installHelper(t)
	gateway := buildGateway(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "REACHED "+r.URL.Path) }))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	id := fmt.Sprintf("sosctl-it-sidecar-%d", time.Now().UnixNano())
	volume, side := id+"-egress", id+"-gateway"
	if out, err := e.Podman("volume", "create", volume); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer e.Podman("volume", "rm", "-f", volume)
	defer e.Podman("rm", "-f", "-t", "0", side)

	rules, _ := json.Marshal(egress.Rules{Allow: []egress.RuleText{{Rule: fmt.Sprintf("127.0.0.1:%d", port), Source: "test"}}})
	userns := []string{"--userns", "keep-id"}
	if e.User == "" && os.Getuid() == 0 {
		userns = nil // a root service: uid 1000 is 1000 in both containers
	}
	// The sidecar: the host's (or the machine's) network, nothing else.
	args := append([]string{"run", "-d", "--name", side, "--user", "1000:1000"}, userns...)
	args = append(args, "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only",
		"--network", "host", "--mount", "type=bind,source="+gateway+",destination=/run/sourceos-gateway,ro=true",
		"--volume", volume+":"+container.EgressTarget+":U", "--entrypoint", "/run/sourceos-gateway", podmantest.Image,
		container.EgressTarget+"/"+container.EgressSocket, "-1", base64.RawURLEncoding.EncodeToString(rules), container.EgressTarget+"/egress.jsonl")
	if out, err := e.Podman(args...); err != nil {
		t.Fatalf("start the sidecar: %v\n%s", err, out)
	}
	ready := false
	for i := 0; i < 100 && !ready; i++ {
		out, _ := e.Podman("logs", side)
		ready = strings.Contains(out, "ready "+container.EgressTarget)
		if !ready {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ready {
		out, _ := e.Podman("logs", side)
		t.Fatalf("the sidecar never said ready:\n%s", out)
	}

	// The agent's container, as a session makes it, but with the socket from the volume.
	proxy := "http://" + container.EgressListen
	env := map[string]string{"container": "podman", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/agent", "http_proxy": proxy}
	want := guard.Expectation{Nonce: "sidecar", UID: 1000, GID: 1000, Groups: []int{1000}, Env: env,
		EnvNames: []string{"HOSTNAME", "TERM"}, Mounts: []string{container.HelperTarget, "/tmp", container.EgressTarget},
		Hostname: "sourceos-agent", Umask: 0o022, Interfaces: []string{"lo"}}
	agent := append(hardenedArgs(e, helperPath), "--env", "http_proxy="+proxy,
		"--volume", volume+":"+container.EgressTarget+":ro", "--entrypoint", container.HelperTarget, podmantest.Image,
		"check", want.Encode(), "--forward", container.EgressListen+"="+container.EgressTarget+"/"+container.EgressSocket, "--", "sh", "-c",
		fmt.Sprintf(`wget -q -O- http://127.0.0.1:%d/via-sidecar; echo " allowed=$?"
wget -q -O- http://127.0.0.1:%d/ 2>&1; echo " other=$?"
touch %s/x 2>/dev/null; echo " write=$?"`, port, port+1, container.EgressTarget))
	out, err := e.Podman(agent...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, w := range []string{"REACHED /via-sidecar allowed=0", "403 Forbidden", " other=1", " write=1"} {
		if !strings.Contains(out, w) {
			t.Errorf("inside the agent's container: want %q in\n%s", w, out)
		}
	}

	// Stopped (SIGTERM), the sidecar writes its log into the volume and exits 0.
	if out, err := e.Podman("stop", "-t", "10", side); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code, _ := e.Podman("inspect", "--format", "{{.State.ExitCode}}", side); strings.TrimSpace(code) != "0" {
		logs, _ := e.Podman("logs", side)
		t.Errorf("sidecar exit code %q:\n%s", code, logs)
	}
	log, err := e.Podman("run", "--rm", "--volume", volume+":/v:ro", podmantest.Image, "cat", "/v/egress.jsonl")
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	events, sum, err := egress.ReadSidecarLog(strings.NewReader(log))
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if len(events) != 2 || events[0].Verdict != egress.Allowed || events[0].BytesIn == 0 || events[1].Verdict != egress.Denied || sum.Attempts != 2 || sum.Connections < 2 {
		t.Errorf("sidecar log: %+v", events)
	}
}
