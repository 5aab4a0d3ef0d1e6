package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// egressServers stand in for the internet on the host's loopback: plain HTTP, HTTPS, and a
// third server no rule allows. Each answers with what reached it.
type egressServers struct {
	plain, tls, other *httptest.Server
	p, tp, op         int
	mu                sync.Mutex
	seen              []string // "PORT PATH" of every request that reached a server
}

func startEgressServers(t *testing.T) *egressServers {
	t.Helper()
	s := &egressServers{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()+" "+r.URL.Path)
		s.mu.Unlock()
		fmt.Fprintf(w, "REACHED %s%s", r.Host, r.URL.Path)
	})
	s.plain, s.tls, s.other = httptest.NewServer(h), httptest.NewTLSServer(h), httptest.NewServer(h)
	t.Cleanup(func() { s.plain.Close(); s.tls.Close(); s.other.Close() })
	portOf := func(srv *httptest.Server) int { return srv.Listener.Addr().(*net.TCPAddr).Port }
	s.p, s.tp, s.op = portOf(s.plain), portOf(s.tls), portOf(s.other)
	return s
}

// TestIntegrationEgressGatewaySession runs real containers with no network but the session's
// gateway: through it, an allowed address answers over HTTP and HTTPS (CONNECT); another port
// is refused with the gateway's 403 and its reason; a name allowed by a rule but resolving to
// loopback is refused (DNS rebinding); without the proxy nothing leaves and nothing resolves.
// Every attempt is printed when refused and recorded in the signed bundle.
func TestIntegrationEgressGatewaySession(t *testing.T) {
	e := podmantest.Need(t)
	srv := startEgressServers(t)
	// Address rules name the loopback servers (loopback is refused unless a rule names the
	// address); localhost:PORT is a name rule only, so its loopback address stays refused.
	w := newWorkspace(t, e, fmt.Sprintf(`  network:
    mode: gateway
    egress:
      allow: ["127.0.0.1:%d", "localhost:%d"]
      deny: [denied.example.com]
`, srv.p, srv.op))
	f, out, errOut := sessionFactory(t, e, w, nil)
	script := fmt.Sprintf(`
echo "proxy=$https_proxy"
wget -q -O- http://127.0.0.1:%[1]d/plain; echo " plain=$?"
# The stand-ins for the internet are on loopback, which NO_PROXY keeps direct for curl.
no_proxy= NO_PROXY= curl -sSk https://127.0.0.1:%[2]d/tls; echo " tls=$?"
no_proxy= NO_PROXY= curl -sSk https://127.0.0.1:%[3]d/other-tls 2>&1; echo " othertls=$?"
wget -q -O- --no-check-certificate https://127.0.0.1:%[2]d/https-as-plain 2>&1; echo " plainhttps=$?"
wget -q -O- http://127.0.0.1:%[3]d/other 2>&1; echo " other=$?"
wget -q -O- http://localhost:%[3]d/rebind 2>&1; echo " rebind=$?"
wget -q -O- http://denied.example.com/ 2>&1; echo " denied=$?"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
wget -q -O- http://127.0.0.1:%[1]d/direct 2>&1; echo " direct=$?"
nslookup example.com >/dev/null 2>&1; echo " dns=$?"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
`, srv.p, srv.tp, srv.op)
	code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--allow-host", fmt.Sprintf("127.0.0.1:%d", srv.tp), "--", "sh", "-c", script)
	got := out.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, got, errOut)
	}
	for _, want := range []string{
		"proxy=http://127.0.0.1:3128",
		fmt.Sprintf("REACHED 127.0.0.1:%d/plain plain=0", srv.p),
		fmt.Sprintf("REACHED 127.0.0.1:%d/tls tls=0", srv.tp), // CONNECT, TLS end to end
		"CONNECT tunnel failed, response 403", " othertls=56",
		" plainhttps=1", "403 Forbidden", " other=1", " denied=1",
		" rebind=1", " direct=1", " dns=1", "net=lo \n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inside the container: want %q in\n%s", want, got)
		}
	}
	srv.mu.Lock()
	seen := strings.Join(srv.seen, "\n")
	srv.mu.Unlock()
	if want := fmt.Sprintf("127.0.0.1:%d /plain\n127.0.0.1:%d /tls", srv.p, srv.tp); seen != want {
		t.Errorf("requests that reached the servers:\n%s\nwant (nothing refused, nothing direct):\n%s", seen, want)
	}
	stderr := errOut.String()
	for _, want := range []string{
		fmt.Sprintf("! egress: 127.0.0.1:%d is not in the session's egress allowlist; to allow it: --allow-host 127.0.0.1:%d", srv.op, srv.op),
		"! egress: denied.example.com:80 is denied by rule denied.example.com (profile)",
		"! egress: localhost resolves only to refused addresses: 127.0.0.1 is a loopback address",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	dir := bundleFrom(t, stderr)
	pred := verifyBundle(t, w, dir)
	eg := pred.Egress
	if eg == nil || eg.Attempts != 7 || eg.Allowed != 2 || eg.Denied != 5 || pred.Network != "none" {
		t.Fatalf("egress record %+v, network %q; want 7 attempts, 2 allowed, 5 denied", eg, pred.Network)
	}
	var cmdLine bool
	for _, r := range eg.Allow {
		cmdLine = cmdLine || r.Rule == fmt.Sprintf("127.0.0.1:%d", srv.tp) && strings.HasPrefix(r.Source, "--allow-host")
	}
	if !cmdLine {
		t.Errorf("the --allow-host rule is not recorded as such: %+v", eg.Allow)
	}
	logFile, err := os.Open(filepath.Join(dir, "artifacts", "egress.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	sc := bufio.NewScanner(logFile)
	var lines []egress.Event
	for sc.Scan() {
		var ev egress.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ev)
	}
	if len(lines) != 7 || lines[1].Method != http.MethodConnect || lines[1].Verdict != egress.Allowed || lines[1].BytesIn == 0 ||
		lines[3].Verdict != egress.Denied || !strings.Contains(lines[3].Reason, "tunnel https:// with CONNECT") || lines[5].Address != "127.0.0.1" {
		t.Errorf("log %+v", lines)
	}
	if names := sessionContainers(t, e); len(names) != 0 {
		t.Errorf("containers left: %v", names)
	}

	// evidence inspect shows the account per destination.
	f2, out2, _ := testFactory(t)
	if code := run(t, f2, "am", "evidence", "inspect", dir); code != 0 || !strings.Contains(out2.String(), "gateway: 7 attempts, 2 allowed, 5 denied") {
		t.Errorf("evidence inspect: exit %d\n%s", code, out2)
	}
}
