package agentmachine_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// TestIntegrationSidecarGatewaySession runs a whole session the way it runs on a Podman
// machine or a remote service — the connection is not a local socket, so nothing on this
// host's file system reaches the containers — against the real service: the helper and the
// gateway are shipped into a volume through the API, the gateway runs in its own container
// and says ready before the session's container exists, the session's container (no network)
// reaches an allowed address through it and is refused another, and the gateway's log, read
// back from its volume, is in the signed bundle. Only the programs' volume remains.
func TestIntegrationSidecarGatewaySession(t *testing.T) {
	env := podmantest.Need(t)
	client, err := podman.Connect(context.Background(), podman.Endpoint{URI: env.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "REACHED "+r.URL.Path) }))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	repo, home := t.TempDir(), t.TempDir()
	prof, err := profile.Parse("p.yaml", []byte(fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: sc}\nspec:\n  host: {os: linux}\n  image: {ref: %s}\n  resources: {memoryMiB: 256}\n  network: {egress: {allow: [\"127.0.0.1:%d\"]}}\n", podmantest.Image, port)))
	if err != nil {
		t.Fatal(err)
	}
	s, out, errOut := remoteSession(client, repo, home, func(string) string { return "" })
	script := fmt.Sprintf(`wget -q -O- http://127.0.0.1:%[1]d/through-the-sidecar; echo " allowed=$?"
wget -q -O- http://127.0.0.1:%[2]d/ 2>&1; echo " other=$?"
touch /run/sourceos-egress/x 2>/dev/null; echo " write=$?"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"`, port, port+1)
	res, err := s.Run(context.Background(), prof, agentmachine.SessionRequest{Tool: "shell", Repo: repo, Args: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	sc := res.Plan.Egress.Sidecar
	t.Cleanup(func() { _ = client.RemoveVolume(context.Background(), sc.Programs) })
	got := out.String()
	for _, w := range []string{"REACHED /through-the-sidecar allowed=0", "403 Forbidden", " other=1", " write=1", "net=lo \n"} {
		if !strings.Contains(got, w) {
			t.Errorf("inside: want %q in\n%s\nstderr:\n%s", w, got, errOut.String())
		}
	}
	if res.Outcome.Checks.Inside != "passed" {
		t.Errorf("the shipped helper did not check the container from inside: %+v", res.Outcome.Checks)
	}
	pub := home + "/cfg/keys/evidence.pub"
	v, err := evidence.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, err := evidence.Verify(res.Bundle, v)
	if err != nil {
		t.Fatal(err)
	}
	if eg := b.Statement.Predicate.Egress; eg == nil || eg.Attempts != 2 || eg.Allowed != 1 || eg.Denied != 1 {
		t.Errorf("egress record %+v", eg)
	}
	for _, vol := range []string{sc.Volume} {
		if ok, _ := client.VolumeExists(context.Background(), vol); ok {
			t.Errorf("volume %s left behind", vol)
		}
	}
	if ok, _ := client.VolumeExists(context.Background(), sc.Programs); !ok {
		t.Errorf("the programs' volume %s was not kept for the next session", sc.Programs)
	}
	if names, _ := env.Podman("ps", "-a", "--filter", "label=dev.sourceos.agent-machine.session="+res.Plan.SessionID, "--format", "{{.Names}}"); strings.TrimSpace(names) != "" {
		t.Errorf("containers left: %s", names)
	}
}

// remoteSession is a session on the real service presented as a remote one: nothing on this
// host's file system reaches its containers.
func remoteSession(client *podman.Client, repo, home string, getenv func(string) string) (*agentmachine.Session, *bytes.Buffer, *bytes.Buffer) {
	if os.Getuid() == 0 {
		_ = os.Chown(repo, 1000, 1000)
	}
	var out, errOut bytes.Buffer
	return &agentmachine.Session{
		Connect: func(context.Context, machine.Ref) (agentmachine.Engine, agentmachine.Connection, error) {
			return client, agentmachine.Connection{URI: "ssh://agent@build-host/run/podman/podman.sock", Source: "test: the local service as if remote"}, nil
		},
		Host:   agentmachine.Host{OS: "linux", Arch: "amd64", UID: 1000, GID: 1000, Home: home, WorkDir: repo},
		IO:     agentmachine.IO{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut},
		Getenv: getenv, Environ: func() []string { return nil }, ReadFile: os.ReadFile,
		Now: time.Now, StopTimeout: time.Second, Dirs: agentmachine.Dirs{Config: home + "/cfg", State: home + "/state"},
		TempDir: home, Git: fingerprint.Git{}, Runner: podman.ExecRunner{}, LookPath: exec.LookPath,
		Ship: helper.Ship,
	}, &out, &errOut
}

// TestIntegrationSidecarInjectsSecrets: where the gateway runs in its sidecar, the injected
// secret's value reaches it on its standard input (with the host's SSL_CERT_FILE roots), the
// session CA's certificate reaches the container through the shared volume, the injected host
// receives the real key, and neither the sidecar's nor the session's container shows it in
// podman inspect.
func TestIntegrationSidecarInjectsSecrets(t *testing.T) {
	env := podmantest.Need(t)
	client, err := podman.Connect(context.Background(), podman.Endpoint{URI: env.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	const key = "sk-sidecar-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc"
	var seen bytes.Buffer
	var mu sync.Mutex
	var inspectedYet atomic.Bool // /go answers GO once both containers were inspected
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/go" {
			if inspectedYet.Load() {
				_, _ = io.WriteString(w, "GO")
			}
			return
		}
		mu.Lock()
		fmt.Fprintf(&seen, "%s %s\n", r.URL.Path, r.Header.Get("X-Api-Key"))
		mu.Unlock()
		_, _ = io.WriteString(w, "REACHED "+r.URL.Path)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	repo, home := t.TempDir(), t.TempDir()
	roots := home + "/roots.pem"
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse("p.yaml", []byte(fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: sc}
spec:
  host: {os: linux}
  image: {ref: %s}
  resources: {memoryMiB: 256}
  tools:
    custom: [{name: probe, enabled: true, command: [sh, -c], secrets: [api]}]
  secrets: [{name: api, fromEnv: KEY, target: API_KEY, inject: [{hosts: ["%s"], header: X-Api-Key}]}]
  network: {egress: {allow: ["%s"]}}
`, podmantest.Image, addr, addr)))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"KEY": key, "SSL_CERT_FILE": roots}
	s, out, errOut := remoteSession(client, repo, home, func(k string) string { return vars[k] })
	inspected := make(chan string, 1)
	go func() { // podman inspect of both containers while the session runs
		for i := 0; i < 600; i++ {
			names, _ := env.Podman("ps", "--filter", "label=dev.sourceos.agent-machine.profile=sc", "--format", "{{.Names}}")
			if f := strings.Fields(names); len(f) == 2 {
				got, _ := env.Podman(append([]string{"inspect"}, f...)...)
				inspectedYet.Store(true)
				inspected <- got
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		inspectedYet.Store(true)
		inspected <- ""
	}()
	script := fmt.Sprintf(`export no_proxy= NO_PROXY=
i=0; until curl -sS https://%[1]s/go | grep -q GO || [ $i -gt 600 ]; do sleep 0.2; i=$((i+1)); done
curl -sS https://%[1]s/injected; echo " injected=$?"
echo "key=$API_KEY"`, addr)
	res, err := s.Run(context.Background(), prof, agentmachine.SessionRequest{Tool: "probe", Repo: repo, Secrets: []string{"api"}, Args: []string{script}})
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	t.Cleanup(func() { _ = client.RemoveVolume(context.Background(), res.Plan.Egress.Sidecar.Programs) })
	if got := out.String(); !strings.Contains(got, "REACHED /injected injected=0") || strings.Contains(got, key) || !strings.Contains(got, "key=sk-sidecar-") {
		t.Errorf("inside:\n%s\nstderr:\n%s", got, errOut.String())
	}
	mu.Lock()
	if !strings.Contains(seen.String(), "/injected "+key) {
		t.Errorf("the injected host received:\n%s", seen.String())
	}
	mu.Unlock()
	if got := <-inspected; got == "" || strings.Contains(got, key) {
		t.Errorf("podman inspect of the running containers (empty: never both seen) shows the key:\n%.3000s", got)
	}
	if strings.Contains(errOut.String(), key) {
		t.Errorf("the key is on the terminal:\n%s", errOut.String())
	}
}
