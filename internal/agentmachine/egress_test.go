package agentmachine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

const gatewayNetwork = `  network:
    egress:
      allow: [registry.npmjs.org:443, "*.example.org"]
      deny: [bad.example.org]
`

func withFakeHelper(se *sessionEnv) {
	se.session.Helper = func(string, bool) (HelperRef, error) {
		return HelperRef{Path: "/opt/sourceos-helper", Digest: "sha256:" + strings.Repeat("c", 64)}, nil
	}
}

// TestGatewayPlan checks what a gateway session's plan holds: no network but the mounted
// socket directory, the proxy variables, the forwarder in the helper's command, and every
// rule with its source — the profile's, the tool's own hosts and --allow-host's — in the
// decision, whose hash therefore changes with --allow-host.
func TestGatewayPlan(t *testing.T) {
	se := newSessionEnv(t, &fakeEngine{present: true}, nil, gatewayNetwork)
	withFakeHelper(se)
	req := SessionRequest{Tool: "codex", Repo: se.repo, Direct: true}
	base, err := se.session.Plan(context.Background(), se.profile, req)
	if err != nil {
		t.Fatal(err)
	}
	req.AllowHosts = []string{"github.com:22"}
	pl, err := se.session.Plan(context.Background(), se.profile, req)
	if err != nil {
		t.Fatal(err)
	}
	s := pl.Container
	if s.Network != "none" || pl.Decision.Network != "gateway" || pl.Egress == nil {
		t.Fatalf("network %q, decision %q, egress %+v", s.Network, pl.Decision.Network, pl.Egress)
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"} {
		if s.Env[k] != "http://127.0.0.1:3128" {
			t.Errorf("%s = %q", k, s.Env[k])
		}
	}
	if s.Env["NO_PROXY"] != "localhost,127.0.0.1,::1" {
		t.Errorf("NO_PROXY = %q", s.Env["NO_PROXY"])
	}
	wantDir := filepath.Join("/run/user/1000/sourceos/egress", pl.SessionID[strings.LastIndexByte(pl.SessionID, '-')+1:])
	if pl.Egress.Socket != filepath.Join(wantDir, "gateway.sock") || pl.Egress.SocketUID != -1 {
		t.Errorf("socket %s owned by %d; want in %s, -1 (rootless: the user's own)", pl.Egress.Socket, pl.Egress.SocketUID, wantDir)
	}
	found := false
	for _, m := range s.Mounts {
		if m.Target == container.EgressTarget {
			found = m.Source == wantDir && m.ReadOnly
		}
	}
	if !found {
		t.Errorf("the socket's directory is not mounted read-only at %s: %+v", container.EgressTarget, s.Mounts)
	}
	var rules []string
	for _, r := range pl.Decision.Egress.Allow {
		rules = append(rules, r.Rule+" <"+r.Source+">")
	}
	want := "registry.npmjs.org:443 <profile>, *.example.org <profile>, api.openai.com:443 <tool codex (api)>, chatgpt.com:443 <tool codex (api)>, auth.openai.com:443 <tool codex (auth)>, github.com:22 <--allow-host (this session only)>"
	if got := strings.Join(rules, ", "); got != want {
		t.Errorf("allow rules:\n got %s\nwant %s", got, want)
	}
	if d := pl.Decision.Egress.Deny; len(d) != 1 || d[0].Rule != "bad.example.org" {
		t.Errorf("deny rules: %+v", d)
	}
	if pl.PolicyHash == base.PolicyHash {
		t.Error("--allow-host did not change the policy hash")
	}
	// The forwarder is started by the helper, before the tool.
	spec := withHelper(s, *pl.Helper, container.Image{}, "n", pl.Egress.helperArgs()...)
	if cmd := strings.Join(spec.Command, " "); !strings.Contains(cmd, " --forward 127.0.0.1:3128=/run/sourceos-egress/gateway.sock -- codex ") {
		t.Errorf("helper command: %s", cmd)
	}
	var table strings.Builder
	if err := WriteTable(&table, pl); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"none but the egress gateway (proxy http://127.0.0.1:3128", "github.com:22  (--allow-host (this session only))", "bad.example.org  (profile; deny wins)"} {
		if !strings.Contains(table.String(), w) {
			t.Errorf("the plan table lacks %q:\n%s", w, table.String())
		}
	}
}

// TestGatewayPlanRootful gives the socket to the uid the container runs as on a root service
// (no user namespace maps it), and lists telemetry hosts without allowing them.
func TestGatewayPlanRootful(t *testing.T) {
	p, err := profile.LoadBytes("p.yaml", []byte("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: t}\nspec:\n  host: {os: linux}\n  image: {ref: localhost/x:1}\n  tools: {claude-code: {enabled: true}}\n  network: gateway\n"), profile.Env{Home: "/h", WorkDir: "/h"})
	if err != nil {
		t.Fatal(err)
	}
	se := newSessionEnv(t, &fakeEngine{present: true}, nil, "")
	se.profile = p
	f := Facts{OS: "linux", Arch: "amd64", Home: se.home, UID: 0, GID: 0, RepoUID: 1001, RepoGID: 1001, Local: true, StateDir: "/root/state",
		Connection: Connection{URI: "unix:///run/podman/podman.sock"}, Helper: HelperRef{Path: "/h", Digest: "sha256:x"}, Now: time.Now(), SessionID: "s-0123456789ab"}
	pl, err := NewPlan(se.profile, SessionRequest{Tool: "claude-code", Repo: se.repo, Direct: true}, f)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Egress.SocketUID != 1001 || pl.Egress.Socket != "/root/state/egress/0123456789ab/gateway.sock" {
		t.Errorf("socket %s owned by %d; want under the state directory, owned by the container's uid 1001", pl.Egress.Socket, pl.Egress.SocketUID)
	}
	var unallowed []string
	for _, r := range pl.Decision.Egress.Unallowed {
		unallowed = append(unallowed, r.Rule)
	}
	if strings.Join(unallowed, " ") != "statsig.anthropic.com:443 sentry.io:443" {
		t.Errorf("unallowed: %v", unallowed)
	}
	for _, r := range pl.Decision.Egress.Allow {
		if strings.Contains(r.Rule, "statsig") || strings.Contains(r.Rule, "sentry") {
			t.Errorf("a telemetry host is allowed: %+v", r)
		}
	}
}

// TestGatewayRefusals: --allow-host without the gateway or with a bad rule is bad input, and a
// gateway the session cannot reach (another host, no helper) refuses the session — dry run
// and real run alike — rather than running it open.
func TestGatewayRefusals(t *testing.T) {
	cases := []struct {
		name, network string
		allow         []string
		conn          string
		helper        bool
		want          string
		input         bool
	}{
		{"allow-host without the gateway", "  network: none\n", []string{"a.example"}, "", true, "--allow-host: adds to the egress gateway's allowlist, and profile t has network none", true},
		{"allow-host with bridge", "  network: bridge\n", []string{"a.example"}, "", true, "and profile t has network bridge", true},
		{"bad allow-host", "  network: gateway\n", []string{"a.*.example"}, "", true, `--allow-host: "a.*.example": a wildcard is allowed only as a leading "*."`, true},
		{"bad allow-host port", "  network: gateway\n", []string{"a.example:0"}, "", true, `"a.example:0": port must be 1-65535`, true},
		{"remote service without the programs to ship", "  network: gateway\n", nil, "ssh://u@host/run/podman.sock", true, "on ssh://u@host/run/podman.sock the gateway runs in a sidecar container, and this sourceosctl was built without the programs it ships there", false},
		{"no helper", "  network: gateway\n", nil, "", false, "built without its container helper", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			se := newSessionEnv(t, &fakeEngine{present: true}, nil, c.network)
			if c.helper {
				withFakeHelper(se)
			}
			if c.conn != "" {
				se.session.Connect = func(context.Context, machine.Ref) (Engine, Connection, error) {
					return se.engine, Connection{URI: c.conn, Source: "test"}, nil
				}
				se.profile.Spec.Mounts = nil // paths of this host: refused on another machine's service
			}
			// On another machine's service the repository travels to a volume; --direct is refused.
			req := SessionRequest{Tool: "codex", Repo: se.repo, Direct: c.conn == "", AllowHosts: c.allow}
			_, planErr := se.session.Plan(context.Background(), se.profile, req)
			_, runErr := se.session.Run(context.Background(), se.profile, req)
			for _, err := range []error{planErr, runErr} {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want one containing %q", err, c.want)
				}
				var in *InputError
				if errors.As(err, &in) != c.input {
					t.Errorf("%v: input error %v, want %v", err, !c.input, c.input)
				}
			}
			if calls := se.engine.sessionCalls(); strings.Contains(calls, "create") {
				t.Errorf("a container was created: %s", calls)
			}
		})
	}
}

// proxyRequest sends one request through the gateway's socket, as the forwarder relays it:
// CONNECT host:port (or a plain GET of an http:// URL) and returns the status line and body.
func proxyRequest(t *testing.T, socket, method, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("dial the gateway: %v", err)
	}
	defer c.Close()
	req, _ := http.NewRequest(method, target, nil)
	if method == http.MethodConnect {
		req.URL = nil
		req.Host = target
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	} else if err := req.WriteProxy(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read the gateway's answer: %v", err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if method != http.MethodConnect || resp.StatusCode != 200 {
		_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	}
	return resp.StatusCode, body.String()
}

// TestGatewayRecordsEveryAttempt plays the container: while the session runs, it asks the
// gateway through the mounted socket for an allowed address, a host outside the allowlist and
// a denied one. Each answer is right, each refusal is printed once, and the signed bundle
// holds every attempt in its log and the per-destination summary.
func TestGatewayRecordsEveryAttempt(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the destination") })}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	dest := l.Addr().String()

	e := &fakeEngine{present: true}
	se := newSessionEnv(t, e, nil, gatewayNetwork)
	withFakeHelper(se)
	type answer struct {
		code int
		body string
	}
	var got []answer
	e.during = func(s container.Spec) {
		var dir string
		for _, m := range s.Mounts {
			if m.Target == container.EgressTarget {
				dir = m.Source
			}
		}
		sock := filepath.Join(dir, container.EgressSocket)
		if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("socket %s: %v %v; want mode 0600", sock, st, err)
		}
		for _, r := range []struct{ method, target string }{
			{http.MethodGet, "http://" + dest + "/x"},
			{http.MethodConnect, "elsewhere.example.com:443"},
			{http.MethodConnect, "bad.example.org:443"},
		} {
			code, body := proxyRequest(t, sock, r.method, r.target)
			got = append(got, answer{code, body})
		}
	}
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Direct: true, AllowHosts: []string{dest}})
	if err != nil {
		t.Fatalf("%v\n%s", err, se.errOut)
	}
	if len(got) != 3 || got[0].code != 200 || got[0].body != "hello from the destination" ||
		got[1].code != 403 || !strings.Contains(got[1].body, "--allow-host elsewhere.example.com:443") ||
		got[2].code != 403 || !strings.Contains(got[2].body, "denied by rule bad.example.org (profile)") {
		t.Fatalf("answers through the gateway: %+v", got)
	}
	if n := strings.Count(se.errOut.String(), "! egress: "); n != 2 {
		t.Errorf("%d denial lines on the terminal, want 2:\n%s", n, se.errOut)
	}
	pred := se.verified(t, res)
	eg := pred.Egress
	if eg == nil || eg.Attempts != 3 || eg.Allowed != 1 || eg.Denied != 2 || eg.Log != EgressLog || len(eg.Destinations) != 3 {
		t.Fatalf("egress record: %+v", eg)
	}
	if d := eg.Destinations[0]; d.Host != "127.0.0.1" || d.Allowed != 1 || d.BytesIn == 0 || d.BytesOut == 0 {
		t.Errorf("allowed destination: %+v", d)
	}
	if pred.Network != "none" {
		t.Errorf("network %q", pred.Network)
	}
	raw, err := os.ReadFile(filepath.Join(res.Bundle, "artifacts", EgressLog))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 3 {
		t.Fatalf("log lines:\n%s", raw)
	}
	var first egress.Event
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Verdict != egress.Allowed || first.Address != "127.0.0.1" || first.Source != policy.SourceAllowHost {
		t.Errorf("first log line %s: %+v %v", lines[0], first, err)
	}
	if _, err := os.Stat(filepath.Dir(res.Plan.Egress.Socket)); !os.IsNotExist(err) {
		t.Errorf("the socket's directory outlived the session: %v", err)
	}
}

// failingListener is a gateway socket whose Accept fails once the session has started.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l failingListener) Accept() (net.Conn, error) {
	<-l.fail
	return nil, errors.New("accept: the gateway's socket broke")
}

// TestAFailedGatewayFailsTheSessionClosed: a gateway that stops serving while the tool runs
// stops the container and fails the session (not an interrupt, never left running open), and
// the evidence says why.
func TestAFailedGatewayFailsTheSessionClosed(t *testing.T) {
	e := &fakeEngine{present: true, block: true}
	se := newSessionEnv(t, e, nil, gatewayNetwork)
	withFakeHelper(se)
	fail := make(chan struct{})
	se.session.listenGateway = func(path string, uid int) (net.Listener, error) {
		l, err := egress.Listen(path, uid)
		return failingListener{Listener: l, fail: fail}, err
	}
	e.during = func(container.Spec) { close(fail) }
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Direct: true})
	var ge *GatewayError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "the gateway's socket broke") {
		t.Fatalf("error %v (%T), want a *GatewayError", err, err)
	}
	if calls := e.sessionCalls(); !strings.Contains(calls, "attach start stop wait inspect execs remove") {
		t.Errorf("the container was not stopped and removed: %s", calls)
	}
	pred := se.verified(t, res)
	if pred.Session.Outcome != "failed" || pred.Session.Interrupted || !strings.Contains(pred.Session.Error, "egress gateway failed") {
		t.Errorf("session record: %+v", pred.Session)
	}
}

// TestAConnectionTheGatewayCannotAccountForFailsTheSession: a tunnel still open when the
// container has gone is a gap in the record; the session fails and the record names it.
func TestAConnectionTheGatewayCannotAccountForFailsTheSession(t *testing.T) {
	old := gatewayShutdown
	gatewayShutdown = 200 * time.Millisecond
	defer func() { gatewayShutdown = old }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open: the destination never hangs up
		}
	}()
	e := &fakeEngine{present: true}
	se := newSessionEnv(t, e, nil, gatewayNetwork)
	withFakeHelper(se)
	var tunnel net.Conn
	e.during = func(s container.Spec) {
		for _, m := range s.Mounts {
			if m.Target == container.EgressTarget {
				c, err := net.Dial("unix", filepath.Join(m.Source, container.EgressSocket))
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", l.Addr(), l.Addr())
				line, _ := bufio.NewReader(c).ReadString('\n')
				if !strings.Contains(line, " 200 ") {
					t.Errorf("CONNECT: %q", line)
				}
				tunnel = c // never closed while the session ends
			}
		}
	}
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Direct: true, AllowHosts: []string{l.Addr().String()}})
	if tunnel != nil {
		defer tunnel.Close()
	}
	var ge *GatewayError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "could not account for every connection") {
		t.Fatalf("error %v, want the unaccounted connection", err)
	}
	pred := se.verified(t, res)
	if pred.Egress == nil || !strings.Contains(pred.Egress.Unaccounted, "connections still open") || pred.Session.Outcome != "failed" {
		t.Errorf("record: session %+v, egress %+v", pred.Session, pred.Egress)
	}
}

// TestToolHostsCanBeLeftOut: toolHosts: false leaves the tool's own hosts out of the policy.
func TestToolHostsCanBeLeftOut(t *testing.T) {
	p, err := profile.LoadBytes("p.yaml", []byte(fmt.Sprintf(sessionProfile, "  network:\n    egress:\n      toolHosts: false\n")), profile.Env{Home: "/h", WorkDir: "/h"})
	if err != nil {
		t.Fatal(err)
	}
	d := policy.Decide(p, policy.Request{Tool: "codex", Repo: "/h"}, policy.Host{OS: "linux", Home: "/h"})
	if d.Egress == nil || len(d.Egress.Allow) != 0 || len(d.Egress.Unallowed) != 0 {
		t.Errorf("egress decision %+v, want no rules", d.Egress)
	}
}

// TestDenialLinesDoNotFloodTheTerminal: one line per refused destination, for the first 20;
// repeats and the rest are said once, at the end, as a count — every one is in the record.
func TestDenialLinesDoNotFloodTheTerminal(t *testing.T) {
	e := &fakeEngine{present: true}
	se := newSessionEnv(t, e, nil, gatewayNetwork)
	withFakeHelper(se)
	e.during = func(s container.Spec) {
		for _, m := range s.Mounts {
			if m.Target != container.EgressTarget {
				continue
			}
			sock := filepath.Join(m.Source, container.EgressSocket)
			for i := 0; i < 60; i++ {
				proxyRequest(t, sock, http.MethodConnect, fmt.Sprintf("h%d.test:443", i%30))
			}
		}
	}
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(se.errOut.String(), "! egress: h"); n != 20 {
		t.Errorf("%d denial lines, want 20:\n%s", n, se.errOut)
	}
	if !strings.Contains(se.errOut.String(), "! egress: 40 more refusals not shown") {
		t.Errorf("no count of the rest:\n%s", se.errOut)
	}
	if pred := se.verified(t, res); pred.Egress.Denied != 60 || pred.Egress.Itemized != 60 || len(pred.Egress.Destinations) != 30 {
		t.Errorf("record %+v", pred.Egress)
	}
}
