package helper_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/guard"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationEgressThroughTheForwarder runs the real helper in a real container with no
// network but loopback: its forwarder on 127.0.0.1 relays to a gateway on the host through a
// mounted Unix socket, so busybox wget with http_proxy reaches an allowed host on the host's
// loopback, is refused another with the gateway's reason, and nothing else leaves: a direct
// connection and a name lookup fail inside.
func TestIntegrationEgressThroughTheForwarder(t *testing.T) {
	e := podmantest.Need(t)
	path := installHelper(t)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "REACHED "+r.Host)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	sockDir := t.TempDir()
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// The socket belongs to the user the container runs as, mode 0600, as a session will
	// make it: uid 1000 on a root service (no user namespace). A rootless service maps the
	// container's user to its own account, which this (root) test process is not: there
	// only, the socket is opened to all.
	mode := os.FileMode(0o600)
	if e.User == "" && os.Getuid() == 0 {
		if err := os.Chown(sock, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	} else {
		mode = 0o666
	}
	if err := os.Chmod(sock, mode); err != nil {
		t.Fatal(err)
	}
	var policy egress.Policy
	for _, r := range []string{"allowed.test", fmt.Sprintf("127.0.0.1:%d", port)} {
		rule, err := egress.ParseRule(r, "test")
		if err != nil {
			t.Fatal(err)
		}
		policy.Allow = append(policy.Allow, rule)
	}
	g := &egress.Gateway{Policy: policy, Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "allowed.test" || host == "other.test" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, fmt.Errorf("no such host %s", host)
	}}
	go func() { _ = g.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	}()

	proxy := "http://127.0.0.1:3128"
	env := map[string]string{"container": "podman", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/agent",
		"http_proxy": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "HTTPS_PROXY": proxy}
	want := guard.Expectation{Nonce: "egress", UID: 1000, GID: 1000, Groups: []int{1000}, Env: env,
		EnvNames: []string{"HOSTNAME", "TERM"}, Mounts: []string{container.HelperTarget, "/tmp", "/run/sourceos"},
		Hostname: "sourceos-agent", Umask: 0o022, Interfaces: []string{"lo"}}
	args := hardenedArgs(e, path)
	for _, k := range []string{"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"} {
		args = append(args, "--env", k+"="+proxy)
	}
	// Read-only: connecting to a socket needs no write access to its file system.
	args = append(args, "--mount", "type=bind,source="+sockDir+",destination=/run/sourceos,ro=true",
		"--entrypoint", container.HelperTarget, podmantest.Image,
		"check", want.Encode(), "--forward", "127.0.0.1:3128=/run/sourceos/egress.sock", "--", "sh", "-c",
		fmt.Sprintf(`wget -q -O- http://allowed.test:%[1]d/ ; echo " wget-allowed=$? ."
wget -q -O- http://other.test:%[1]d/ 2>&1; echo " wget-other=$? ."
unset http_proxy HTTP_PROXY
wget -q -O- http://127.0.0.1:%[1]d/ 2>&1; echo " wget-loopback=$? ."
wget -q -O- http://192.0.2.1/ 2>&1; echo " wget-out=$? ."
nslookup example.com >/dev/null 2>&1; echo " nslookup=$? ."`, port))
	out, err := e.Podman(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("inside the container:\n%s", out)
	for _, w := range []string{
		fmt.Sprintf("REACHED allowed.test:%d wget-allowed=0 .", port), // through the forwarder and the gateway
		"403 Forbidden", " wget-other=1 .", // refused by the gateway
		" wget-loopback=1 .", // the host's loopback is not the container's
		" wget-out=1 .",      // no route out but the gateway
		" nslookup=1 .",      // nothing resolves inside
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	var allowed, denied int
	for _, ev := range g.Events() {
		switch {
		case ev.Verdict == egress.Allowed && ev.Host == "allowed.test" && ev.Port == port:
			allowed++
		case ev.Verdict == egress.Denied && ev.Host == "other.test" && strings.Contains(ev.Reason, "--allow-host other.test:"):
			denied++
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if allowed != 1 || denied != 1 {
		t.Errorf("gateway recorded %d allowed and %d denied attempts, want 1 and 1: %+v", allowed, denied, g.Events())
	}
}
