package cli

import (
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// injectKey is the real key of the injection tests: only the injected host may ever see it.
const injectKey = "sk-test-inject-Zq8vN3mK5pR7tY2wX4cB6nL9dF1gH0jS"

// recorder is a server that keeps every request's headers, URL and body.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, q *http.Request) {
	body, _ := io.ReadAll(q.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", q.Method, q.URL.RequestURI())
	_ = q.Header.Write(&b)
	b.Write(body)
	r.mu.Lock()
	r.reqs = append(r.reqs, b.String())
	r.mu.Unlock()
	fmt.Fprintf(w, "REACHED %s", q.URL.Path)
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.reqs, "\n----\n")
}

// TestIntegrationInjectedSecretSession runs a real container whose tool is given a secret for
// injection: the injected host receives the real key (the gateway intercepts it with the
// session CA, which curl trusts through the variables the session sets); inside, the key is
// in no environment, no process's environ and no file, and podman inspect never shows it; the
// placeholder sent to another allowed host is refused and recorded; a host without injection
// is a tunnel (curl sees its own certificate); the evidence names the secret, its host and
// how many requests it went into.
func TestIntegrationInjectedSecretSession(t *testing.T) {
	e := podmantest.Need(t)
	injected, other, plain := &recorder{}, &recorder{}, &recorder{}
	// /go answers GO once the test has inspected the running container: the script waits.
	var inspected atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/go", func(w http.ResponseWriter, _ *http.Request) {
		if inspected.Load() {
			fmt.Fprint(w, "GO")
		}
	})
	mux.Handle("/", plain)
	injSrv, otherSrv, plainSrv := httptest.NewTLSServer(injected), httptest.NewTLSServer(other), httptest.NewServer(mux)
	t.Cleanup(func() { injSrv.Close(); otherSrv.Close(); plainSrv.Close() })
	hostOf := func(s *httptest.Server) string { return s.Listener.Addr().(*net.TCPAddr).String() }
	injHost, otherHost, plainHost := hostOf(injSrv), hostOf(otherSrv), hostOf(plainSrv)

	w := newWorkspace(t, e, "")
	if err := os.WriteFile(filepath.Join(w.repo, "README"), []byte("a file the search must reach\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The gateway verifies the injected host against the host's roots and SSL_CERT_FILE.
	roots := filepath.Join(w.home, "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: injSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: inject}
spec:
  host: {os: linux}
  image: {ref: %s}
  tools:
    custom:
      - {name: probe, enabled: true, command: [sh, -c], secrets: [api]}
  secrets:
    - name: api
      fromEnv: INJECT_KEY
      target: API_KEY
      inject: [{hosts: ["%s"]}]
  network:
    mode: gateway
    egress: {allow: ["%s", "%s", "%s"]}
  resources: {cpus: 1, memoryMiB: 256, pids: 64}
`, podmantest.Image, injHost, injHost, otherHost, plainHost)
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	half := len(injectKey) / 2
	// The stand-ins are on loopback, which NO_PROXY keeps direct: the script clears it.
	script := fmt.Sprintf(`
export no_proxy= NO_PROXY=
i=0; until curl -sS http://%[3]s/go | grep -q GO || [ $i -gt 600 ]; do sleep 0.2; i=$((i+1)); done
echo "placeholder=$API_KEY"
curl -sS -v -H "x-api-key: $API_KEY" "https://%[1]s/injected" 2>/tmp/v1; echo " injected=$?"
curl -sS "https://%[1]s/stored?key=$API_KEY"; echo " inurl=$?"
grep -i 'issuer:' /tmp/v1 | sed 's/^/injected /'
curl -sS -k -v -H "x-api-key: $API_KEY" https://%[2]s/tunnel 2>/tmp/v2; echo " tunnel=$?"
grep -i 'issuer:' /tmp/v2 | sed 's/^/tunnel /'
curl -sS -H "x-api-key: $API_KEY" http://%[3]s/launder; echo " launder=$?"
curl -sS -X POST --data "k=$API_KEY" http://%[3]s/launder-body; echo " launderbody=$?"
# The real key, put together here so that this script's text does not hold it whole.
K="%[4]s""%[5]s"
echo "environ-hits=$(cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -cF "$K")"
echo "file-hits=$(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -exec grep -lsF "$K" {} + | wc -l)"
echo "files-searched=$(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -print | grep -c -e '^/tmp/sourceos-egress-ca.pem$' -e '^/workspace/')"
echo "ca-hits=$(grep -cF "$K" /run/sourceos-egress/ca.pem)" # a directory it may pass, not list
echo "bundle=$SSL_CERT_FILE node=$NODE_EXTRA_CA_CERTS"
head -1 /run/sourceos-egress/ca.pem
`, injHost, otherHost, plainHost, injectKey[:half], injectKey[half:])
	f, out, errOut := sessionFactory(t, e, w, map[string]string{"INJECT_KEY": injectKey, "SSL_CERT_FILE": roots})
	done := make(chan int)
	go func() {
		done <- run(t, f, "--profile", w.profile, "am", "run", "--tool", "probe", "--secret", "api", "--repo", w.repo, "--", script)
	}()
	// While it runs: what podman inspect shows of the container holds the placeholder only.
	var inspect string
	var inspectErr error
	for give := time.Now().Add(2 * time.Minute); inspect == "" && time.Now().Before(give); {
		select {
		case code := <-done:
			t.Fatalf("the session ended (exit %d) before its container could be inspected:\n%s", code, errOut)
		case <-time.After(100 * time.Millisecond):
		}
		if names := sessionContainers(t, e); len(names) > 0 {
			inspect, inspectErr = e.Podman(append([]string{"inspect"}, names...)...)
		}

	}
	inspected.Store(true) // the script goes on (and the session ends) whatever was found
	code := <-done
	if inspect == "" {
		t.Fatalf("the running container could not be inspected (%v); exit %d, stderr:\n%s", inspectErr, code, errOut)
	}
	if strings.Contains(inspect, injectKey) || !strings.Contains(inspect, "API_KEY=sk-test-") {
		t.Errorf("podman inspect of the running container shows the key, or no placeholder:\n%s", inspect)
	}
	got := out.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, got, errOut)
	}
	for _, want := range []string{
		"REACHED /injected injected=0",
		"injected *  issuer: O=sourceosctl; CN=sourceosctl session egress CA", // intercepted, with the session CA
		"REACHED /tunnel tunnel=0",
		"tunnel *  issuer: O=Acme Co", // the server's own certificate: not intercepted
		"placeholder of secret api", " launder=0", " launderbody=0",
		"which is put only into request headers for " + injHost, // never the URL: a host could store it
		"environ-hits=0", "file-hits=0", "files-searched=2", "ca-hits=0", // the search reached the CA bundle and the workspace
		"bundle=/tmp/sourceos-egress-ca.pem node=/run/sourceos-egress/ca.pem",
		"-----BEGIN CERTIFICATE-----",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inside the container: want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, injectKey) || !strings.Contains(got, "placeholder=sk-test-") {
		t.Errorf("the container saw the real key, or no placeholder of its shape:\n%s", got)
	}
	if !strings.Contains(injected.all(), "X-Api-Key: "+injectKey) || strings.Contains(injected.all(), "/stored") {
		t.Errorf("the injected host did not receive the real key in the header, or received the URL that carried it:\n%s", injected.all())
	}
	if strings.Contains(other.all()+plain.all(), injectKey) {
		t.Errorf("the real key reached another host:\n%s\n%s", other.all(), plain.all())
	}
	if strings.Contains(plain.all(), "/launder") {
		t.Errorf("a laundering request reached the plain host:\n%s", plain.all())
	}
	stderr := errOut.String()
	if !strings.Contains(stderr, "placeholder of secret api, which is injected only for its own hosts, not "+plainHost) {
		t.Errorf("the refusal is not printed:\n%s", stderr)
	}
	if strings.Contains(stderr, injectKey) {
		t.Errorf("the key is on the terminal:\n%s", stderr)
	}
	dir := bundleFrom(t, stderr)
	pred := verifyBundle(t, w, dir)
	if eg := pred.Egress; eg == nil || len(eg.Injected) != 1 || eg.Injected[0].Name != "api" || eg.Injected[0].Requests != 1 ||
		len(eg.Injected[0].PerHost) != 1 || eg.Injected[0].PerHost[0].Host != injHost || strings.Join(eg.Injected[0].Hosts, ",") != injHost {
		t.Errorf("the evidence's injection record: %+v", pred.Egress)
	}
	assertNoKeyIn(t, dir, injectKey)
	f2, out2, _ := testFactory(t)
	if code := run(t, f2, "am", "evidence", "inspect", dir); code != 0 || !strings.Contains(out2.String(), "secret api injected into 1 requests ("+injHost+" ×1)") {
		t.Errorf("evidence inspect: exit %d\n%s", code, out2)
	}
}

// assertNoKeyIn fails when any file below dir holds key.
func assertNoKeyIn(t *testing.T, dir, key string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), key) || strings.Contains(decodedPayloadOf(b), key) {
				t.Errorf("%s holds the key", p)
			}
		}
		return nil
	})
}

// TestIntegrationAuthGhAndGit: --auth gh takes its token from the gh on PATH (a stub here),
// and the gateway sets it as the Authorization header for the host the profile injects it
// for while the container holds a placeholder; --auth git hands over the host's git identity
// and nothing else.
func TestIntegrationAuthGhAndGit(t *testing.T) {
	e := podmantest.Need(t)
	const token = "ghp_STUBTOKEN0123456789abcdefghijklmnopq"
	api := &recorder{}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()

	w := newWorkspace(t, e, "")
	stubs := t.TempDir()
	gh := "#!/bin/sh\n[ \"$1 $2\" = \"auth token\" ] || { echo \"unexpected: $*\" >&2; exit 1; }\necho " + token + "\n"
	if err := os.WriteFile(filepath.Join(stubs, "gh"), []byte(gh), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", stubs+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HOME", w.home) // the host's git reads its global identity there
	t.Setenv("XDG_CONFIG_HOME", "")
	if err := os.WriteFile(filepath.Join(w.home, ".gitconfig"), []byte("[user]\n\tname = Ada Host\n\temail = ada@host.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(w.home, "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: auth}
spec:
  host: {os: linux}
  image: {ref: %s}
  tools:
    custom:
      - {name: probe, enabled: true, command: [sh, -c], secrets: [gh], gitIdentity: true}
  secrets:
    - name: gh
      fromCommand: [gh, auth, token]
      target: GH_TOKEN
      inject: [{hosts: ["%s"], header: Authorization, scheme: Bearer}]
  network:
    mode: gateway
    egress: {allow: ["%s"]}
  resources: {cpus: 1, memoryMiB: 256, pids: 64}
`, podmantest.Image, host, host)
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`export no_proxy= NO_PROXY=
curl -sS -H "Authorization: token $GH_TOKEN" https://%s/user; echo " api=$?"
echo "token=$GH_TOKEN"
echo "author=$GIT_AUTHOR_NAME <$GIT_AUTHOR_EMAIL> committer=$GIT_COMMITTER_NAME <$GIT_COMMITTER_EMAIL>"
`, host)
	f, out, errOut := sessionFactory(t, e, w, map[string]string{"SSL_CERT_FILE": roots})
	code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "probe", "--auth", "gh,git", "--repo", w.repo, "--", script)
	got := out.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, got, errOut)
	}
	for _, want := range []string{"REACHED /user api=0", "token=ghp_", "author=Ada Host <ada@host.example> committer=Ada Host <ada@host.example>"} {
		if !strings.Contains(got, want) {
			t.Errorf("inside: want %q in\n%s", want, got)
		}
	}
	if strings.Contains(got+errOut.String(), token) {
		t.Errorf("the token reached the container or the terminal:\n%s\n%s", got, errOut)
	}
	if !strings.Contains(api.all(), "Authorization: Bearer "+token) {
		t.Errorf("the API did not get the token as a Bearer header:\n%s", api.all())
	}
	pred := verifyBundle(t, w, bundleFrom(t, errOut.String()))
	if eg := pred.Egress; eg == nil || len(eg.Injected) != 1 || eg.Injected[0].Name != "gh" || eg.Injected[0].Requests != 1 {
		t.Errorf("evidence: %+v", pred.Egress)
	}
}
