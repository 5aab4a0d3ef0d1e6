package cli

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/fakeapi"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// internetStandIn is a server on 127.0.0.2, a loopback address no NO_PROXY names, so the tools
// send it through the proxy as they would a host on the internet.
func internetStandIn(t *testing.T, h http.Handler, useTLS bool) (*httptest.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	if useTLS {
		srv.TLS = &tls.Config{}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, l.Addr().String()
}

// egressToolsProfile runs image's tools with the gateway, allowing the stand-ins' addresses;
// the tools' base URLs and the fake keys come from the host's environment.
func egressToolsProfile(t *testing.T, w *workspace, image string, allow ...string) string {
	t.Helper()
	p := filepath.Join(w.home, "egress-tools.yaml")
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
    - {name: anthropic, fromEnv: FAKE_ANTHROPIC_KEY, target: ANTHROPIC_API_KEY}
    - {name: openai, fromEnv: FAKE_OPENAI_KEY, target: OPENAI_API_KEY}
  network:
    egress:
      allow: [%s]
  resources: {memoryMiB: 2048}
`, image, strings.Join(allow, ", "))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRealToolsThroughTheGateway runs the real claude and codex CLIs of the workspace image
// against a fake API that stands in for theirs: each completes one turn through the gateway,
// the request is seen at the fake and in the signed evidence; pointed at a host outside the
// allowlist, the tool is refused with the gateway's reason. (Called by the image build test,
// the one test that has the real image.)
func checkRealToolsThroughTheGateway(t *testing.T, e *podmantest.Env, w *workspace, image string) {
	fake := &fakeapi.Server{}
	_, addr := internetStandIn(t, fake, false)
	profile := egressToolsProfile(t, w, image, addr)
	env := map[string]string{"FAKE_ANTHROPIC_KEY": "sk-ant-fake-for-tests", "FAKE_OPENAI_KEY": "sk-fake-for-tests", "ANTHROPIC_BASE_URL": "http://" + addr}
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
	provider := fmt.Sprintf(`model_providers.fake={name="fake",base_url="http://%s/v1",env_key="OPENAI_API_KEY",wire_api="responses"}`, addr)
	for _, tc := range []struct {
		tool string
		args []string
		path string
	}{
		{"claude-code", []string{"--secret", "anthropic", "--", "-p", "say hi"}, "POST /v1/messages"},
		{"codex", []string{"--secret", "openai", "--", "exec", "--skip-git-repo-check", "-c", provider, "-c", "model_provider=fake", "say hi"}, "POST /v1/responses"},
	} {
		before := len(fake.Requests())
		code, out, errOut, bundle := runTool(env, append([]string{"--tool", tc.tool}, tc.args...)...)
		if code != 0 || !strings.Contains(out, fakeapi.Answer) {
			t.Errorf("%s through the gateway: exit %d, stdout:\n%s\nstderr:\n%s", tc.tool, code, out, tail(errOut, 3000))
			continue
		}
		seen := false
		for _, r := range fake.Requests()[before:] {
			seen = seen || r.Method+" "+r.Path == tc.path
		}
		if !seen {
			t.Errorf("%s: the fake API did not see %s: %v", tc.tool, tc.path, fake.Paths())
		}
		pred := verifyBundle(t, w, bundle)
		found := false
		for _, d := range pred.Egress.Destinations {
			found = found || net.JoinHostPort(d.Host, fmt.Sprint(d.Port)) == addr && d.Allowed > 0 && d.BytesOut > 0
		}
		if !found {
			t.Errorf("%s: the signed evidence has no allowed connection to %s: %+v", tc.tool, addr, pred.Egress)
		}
	}
	// The same tool pointed at an address no rule allows.
	outside := strings.Replace(addr, "127.0.0.2", "127.0.0.3", 1)
	env["ANTHROPIC_BASE_URL"] = "http://" + outside
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
	_, addr := internetStandIn(t, mux, true)
	outside := strings.Replace(addr, "127.0.0.2", "127.0.0.3", 1)
	profile := egressToolsProfile(t, w, image, addr)
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
