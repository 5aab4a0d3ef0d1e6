package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/fakeapi"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// internetStandIn is a server on 127.0.0.2, a loopback address no NO_PROXY names, so the tools
// send it through the proxy as they would a host on the internet. With TLS its certificate
// names 127.0.0.2; certPEM is it, for whoever must verify the server.
func internetStandIn(t *testing.T, h http.Handler, useTLS bool) (srv *httptest.Server, addr string, certPEM []byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	if useTLS {
		cert, pemBytes := selfSigned(t, net.ParseIP("127.0.0.2"))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		certPEM = pemBytes
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, l.Addr().String(), certPEM
}

// selfSigned makes a server certificate for ip, and its PEM.
func selfSigned(t *testing.T, ip net.IP) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"stand-in"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{ip},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// egressToolsProfile runs image's tools with the gateway, allowing the stand-ins' addresses;
// the fake keys come from the host's environment and are injected for inject (when set).
func egressToolsProfile(t *testing.T, w *workspace, image, inject string, allow ...string) string {
	t.Helper()
	p := filepath.Join(w.home, "egress-tools.yaml")
	injected := ""
	if inject != "" {
		injected = fmt.Sprintf(`, inject: [{hosts: ["%s"]}]`, inject)
	}
	body := fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: egress-tools}
spec:
  host: {os: linux}
  image: {ref: %s}
  tools:
    claude-code: {enabled: true, env: [ANTHROPIC_BASE_URL], secrets: [anthropic]}
    codex: {enabled: true, secrets: [openai]}
  secrets:
    - {name: anthropic, fromEnv: FAKE_ANTHROPIC_KEY, target: ANTHROPIC_API_KEY%[3]s}
    - {name: openai, fromEnv: FAKE_OPENAI_KEY, target: OPENAI_API_KEY%[3]s}
  network:
    egress:
      allow: [%[2]s]
  resources: {memoryMiB: 2048}
`, image, strings.Join(allow, ", "), injected)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The fake keys of the real tools' sessions: each must reach the fake API, never the
// container.
const (
	fakeAnthropicKey = "sk-ant-api03-FAKEkey0123456789abcdefghijklmnopqrstuvwxyzABCD"
	fakeOpenAIKey    = "sk-proj-FAKEkey0123456789abcdefghijklmnopqrstuvwxyzABCD"
)

// checkRealToolsThroughTheGateway runs the real claude and codex CLIs of the workspace image
// against a fake API over TLS that stands in for theirs, with their keys injected by the
// gateway: each completes one turn, trusting the session CA; the fake receives the real key
// while the tool had a placeholder; the request is in the signed evidence; pointed at a host
// outside the allowlist, the tool is refused with the gateway's reason. (Called by the image
// build test, the one test that has the real image.)
func checkRealToolsThroughTheGateway(t *testing.T, e *podmantest.Env, w *workspace, image string) {
	fake := &fakeapi.Server{}
	_, addr, certPEM := internetStandIn(t, fake, true)
	roots := filepath.Join(w.home, "stand-in.pem")
	if err := os.WriteFile(roots, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	profile := egressToolsProfile(t, w, image, addr, addr)
	env := map[string]string{"FAKE_ANTHROPIC_KEY": fakeAnthropicKey, "FAKE_OPENAI_KEY": fakeOpenAIKey, "ANTHROPIC_BASE_URL": "https://" + addr, "SSL_CERT_FILE": roots}
	runTool := func(env map[string]string, args ...string) (int, string, string, string) {
		f, out, errOut := sessionFactory(t, e, w, env)
		code := run(t, f, append([]string{"--profile", profile, "am", "run", "--repo", w.repo}, args...)...)
		bundle := ""
		for _, line := range strings.Split(errOut.String(), "\n") {
			if d, ok := strings.CutPrefix(line, "evidence: "); ok {
				bundle = d
			}
		}
		return code, out.String(), errOut.String(), bundle
	}
	provider := fmt.Sprintf(`model_providers.fake={name="fake",base_url="https://%s/v1",env_key="OPENAI_API_KEY",wire_api="responses"}`, addr)
	for _, tc := range []struct {
		tool       string
		args       []string
		path       string
		key, where string
	}{
		{"claude-code", []string{"--secret", "anthropic", "--", "-p", "say hi"}, "POST /v1/messages", fakeAnthropicKey, "X-Api-Key"},
		{"codex", []string{"--secret", "openai", "--", "exec", "--skip-git-repo-check", "-c", provider, "-c", "model_provider=fake", "say hi"}, "POST /v1/responses", "Bearer " + fakeOpenAIKey, "Authorization"},
	} {
		before := len(fake.Requests())
		code, out, errOut, bundle := runTool(env, append([]string{"--tool", tc.tool}, tc.args...)...)
		if code != 0 || !strings.Contains(out, fakeapi.Answer) {
			t.Errorf("%s through the gateway: exit %d, stdout:\n%s\nstderr:\n%s", tc.tool, code, out, tail(errOut, 3000))
			continue
		}
		seen, keyed := false, false
		for _, r := range fake.Requests()[before:] {
			if r.Method+" "+r.Path == tc.path {
				seen, keyed = true, keyed || r.Header.Get(tc.where) == tc.key
			}
		}
		if !seen || !keyed {
			t.Errorf("%s: the fake API did not see %s with the real key in %s (seen %v): %v", tc.tool, tc.path, tc.where, seen, fake.Paths())
		}
		if strings.Contains(out+errOut, strings.TrimPrefix(tc.key, "Bearer ")) {
			t.Errorf("%s: the real key is in the session's output", tc.tool)
		}
		pred := verifyBundle(t, w, bundle)
		found := false
		for _, d := range pred.Egress.Destinations {
			found = found || net.JoinHostPort(d.Host, fmt.Sprint(d.Port)) == addr && d.Allowed > 0 && d.BytesOut > 0
		}
		if !found || len(pred.Egress.Injected) == 0 || pred.Egress.Injected[0].Requests == 0 {
			t.Errorf("%s: the signed evidence has no allowed, injected connection to %s: %+v", tc.tool, addr, pred.Egress)
		}
	}
	// The same tool pointed at an address no rule allows.
	outside := strings.Replace(addr, "127.0.0.2", "127.0.0.3", 1)
	env["ANTHROPIC_BASE_URL"] = "https://" + outside
	before := len(fake.Requests())
	code, out, errOut, _ := runTool(env, "--tool", "claude-code", "--secret", "anthropic", "--", "-p", "say hi")
	if code == 0 || !strings.Contains(out+errOut, "is not in the session's egress allowlist; to allow it: --allow-host "+outside) || len(fake.Requests()) != before {
		t.Errorf("claude pointed outside the allowlist: exit %d, requests %v\nstdout:\n%s\nstderr:\n%s", code, fake.Paths()[before:], out, tail(errOut, 2000))
	}
}

// checkClientsThroughTheGateway: curl, git clone over HTTPS, npm and Python's urllib in the
// stack image reach an HTTPS stand-in through the gateway, and are refused for another address.
func checkClientsThroughTheGateway(t *testing.T, e *podmantest.Env, w *workspace, image string) {
	// A git repository served over HTTPS by git's own http-backend.
	root := t.TempDir()
	repo := filepath.Join(root, "demo.git")
	src := filepath.Join(root, "src")
	for _, args := range [][]string{{"init", "-q", "--bare", repo}, {"init", "-q", src},
		{"-C", src, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "served over https"},
		{"-C", src, "push", "-q", repo, "HEAD:refs/heads/main"}, {"-C", repo, "symbolic-ref", "HEAD", "refs/heads/main"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	backend := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	mux := http.NewServeMux()
	mux.Handle("/git/", http.StripPrefix("/git", backend))
	mux.HandleFunc("/left-pad", func(w http.ResponseWriter, r *http.Request) { // an npm registry's packument
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"name":"left-pad","dist-tags":{"latest":"9.9.9"},"versions":{"9.9.9":{"name":"left-pad","version":"9.9.9"}}}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "REACHED %s", r.URL.Path) })
	_, addr, _ := internetStandIn(t, mux, true)
	outside := strings.Replace(addr, "127.0.0.2", "127.0.0.3", 1)
	profile := egressToolsProfile(t, w, image, "", addr)
	script := fmt.Sprintf(`cd /tmp
curl -sSk https://%[1]s/curl; echo " curl=$?"
git -c http.sslVerify=false clone -q https://%[1]s/git/demo.git && git -C demo log -1 --format='clone: %%s'
npm view left-pad version --registry https://%[1]s/ --strict-ssl=false 2>&1 | tail -1
python3 -c "import ssl, urllib.request; print(urllib.request.urlopen('https://%[1]s/python', context=ssl._create_unverified_context()).read().decode())"
curl -sSk https://%[2]s/curl 2>&1; echo " outside=$?"
python3 -c "import ssl, urllib.request; urllib.request.urlopen('https://%[2]s/python', context=ssl._create_unverified_context())" 2>&1 | tail -1
`, addr, outside)
	f, out, errOut := sessionFactory(t, e, w, nil)
	code := run(t, f, "--profile", profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script)
	got := out.String()
	for _, want := range []string{"REACHED /curl curl=0", "clone: served over https", "9.9.9", "REACHED /python",
		"CONNECT tunnel failed, response 403", " outside=56", "Tunnel connection failed: 403"} {
		if !strings.Contains(got, want) {
			t.Errorf("clients through the gateway: want %q; exit %d, stdout:\n%s\nstderr:\n%s", want, code, got, tail(errOut.String(), 2000))
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}
