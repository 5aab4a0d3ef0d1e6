package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/chromiumtest"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// fakeCodeServer stands for code-server in the test image: it serves the folder it is given
// (its last argument) on the --bind-addr it is given, with busybox's httpd — a child process
// of a launcher that stays, as code-server's server is (a server gone is not its end).
const fakeCodeServer = `#!/bin/sh
while [ $# -gt 1 ]; do
  case "$1" in --bind-addr) addr=$2; shift;; esac
  shift
done
httpd -f -p "$addr" -h "$1" &
while sleep 1; do :; done
`

// ideTestImage builds the harness's image with the fake code-server and the IDE label.
func ideTestImage(t testing.TB, e *podmantest.Env) string {
	t.Helper()
	ref := "localhost/sourceos-test/ide:1"
	dir := t.TempDir()
	cf := fmt.Sprintf("FROM %s\nCOPY code-server /opt/code-server/node_modules/.bin/code-server\nLABEL %s=test\n", podmantest.Image, image.IDELabel)
	for name, data := range map[string]string{"Containerfile": cf, "code-server": fakeCodeServer} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if e.User != "" { // the rootless service's user reads the build context
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			_ = os.Chmod(d, 0o755)
		}
	}
	if out, err := e.Podman("build", "-q", "-t", ref, dir); err != nil {
		t.Fatalf("build the IDE test image: %v\n%s", err, out)
	}
	t.Cleanup(func() { removeImage(e, ref) })
	return ref
}

// ideServing is up --ide running in the background.
type ideServing struct {
	stderr *safeBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when the command has returned exit
	exit   int
	url    string
	port   string
}

var ideURL = regexp.MustCompile(`http://127\.0\.0\.1:([0-9]+)/\?tkn=[A-Za-z0-9_-]+`)

// serveIDEInBackground runs sourceosctl with args (up --ide …) until it prints the IDE's
// address.
func serveIDEInBackground(t testing.TB, e *podmantest.Env, w *workspace, args ...string) *ideServing {
	t.Helper()
	return serveInBackground(t, e, w, ideURL, args...)
}

// serveInBackground runs sourceosctl with args until its standard error matches ready, whose
// first group is the port served.
func serveInBackground(t testing.TB, e *podmantest.Env, w *workspace, ready *regexp.Regexp, args ...string) *ideServing {
	t.Helper()
	f, _, _ := sessionFactory(t, e, w, nil)
	s := &ideServing{stderr: &safeBuffer{}, done: make(chan struct{})}
	f.IO.ErrOut = s.stderr
	ctx, cancel := context.WithCancelCause(context.Background())
	s.cancel = func() { cancel(&agentmachine.Interrupt{Signal: "SIGINT"}) }
	go func() {
		s.exit = Run(ctx, f, args)
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(time.Minute):
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if m := ready.FindStringSubmatch(s.stderr.String()); m != nil {
			s.url, s.port = m[0], m[1]
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("%s: ended (exit %d) before serving:\n%s", strings.Join(args, " "), s.exit, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: printed no address within 3 minutes:\n%s", strings.Join(args, " "), s.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop is Ctrl-C: the exit code.
func (s *ideServing) stop(t testing.TB) int {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		return s.exit
	case <-time.After(time.Minute):
		t.Fatalf("serving did not stop within a minute of Ctrl-C:\n%s", s.stderr.String())
	}
	return -1
}

// otherAddresses are this host's addresses other than loopback.
func otherAddresses(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// TestIntegrationWorkspaceIDE serves a workspace's browser IDE on the real service (a stand-in
// for code-server that serves the workspace's files): an image without code-server is refused
// before anything runs; the address up --ide prints answers on 127.0.0.1 and nowhere else,
// refuses a browser without the token, another host name and another origin; with the token
// the workspace's files come back through the relay, and each relay leaves a join's bundle;
// Ctrl-C stops code-server inside and leaves the workspace up; a workspace changed behind
// sourceosctl's back ends the serving and nothing more is relayed.
func TestIntegrationWorkspaceIDE(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	for name, data := range map[string]string{"hello.txt": "hello from the workspace\n", "page.html": leakPage} {
		if err := os.WriteFile(filepath.Join(w.repo, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Getuid() == 0 {
			_ = os.Chown(filepath.Join(w.repo, name), 1000, 1000)
		}
	}
	cli := workspaceCLI(t, e, w, "ide")

	// The harness's image has no code-server: refused before a container is made.
	code, _, stderr := cli("up", "--repo", w.repo, "--name", "ide", "--ide")
	if code == 0 || !strings.Contains(stderr, "no code-server") || !strings.Contains(stderr, "image build --ide") {
		t.Fatalf("up --ide on an image without code-server: exit %d\n%s", code, stderr)
	}
	if out, _ := e.Podman("ps", "-aq", "--filter", "label="+agentmachine.LabelWorkspace+"=ide"); strings.TrimSpace(out) != "" {
		t.Fatalf("a refused up --ide left containers: %s", out)
	}
	if code, _, stderr := cli("up", "--repo", w.repo, "--name", "ide", "--ide-port", "8080"); code != ExitUsage || !strings.Contains(stderr, "needs --ide") {
		t.Errorf("--ide-port without --ide: exit %d\n%s", code, stderr)
	}

	ref := ideTestImage(t, e)
	body, err := os.ReadFile(w.profile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.profile, bytes.Replace(body, []byte("ref: "+podmantest.Image), []byte("ref: "+ref), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := serveIDEInBackground(t, e, w, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "ide", "--ide")
	base := "http://127.0.0.1:" + srv.port

	get := func(c *http.Client, url string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	plain := &http.Client{Timeout: time.Minute}
	if code, _ := get(plain, base+"/hello.txt", nil); code != http.StatusUnauthorized {
		t.Errorf("without the token: status %d", code)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	if code, _ := get(browser, srv.url, nil); code != http.StatusNotFound { // httpd has no index: the redirect reached it
		t.Errorf("the printed address: status %d, want the stand-in's 404 for /", code)
	}
	code, got := get(browser, base+"/hello.txt", nil)
	if code != 200 || got != "hello from the workspace\n" {
		t.Fatalf("a workspace file through the IDE: status %d, %q", code, got)
	}
	if code, _ := get(browser, base+"/hello.txt", map[string]string{"Host": "rebound.example:" + srv.port}); code != http.StatusForbidden {
		t.Errorf("another host name with the cookie: status %d", code)
	}
	if code, _ := get(browser, base+"/hello.txt", map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("another origin with the cookie: status %d", code)
	}
	for _, ip := range otherAddresses(t) {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, srv.port), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the IDE answers on %s, not only on the loopback", ip)
		}
	}
	// The agent sees no token: no file, command line or environment in the container holds
	// it (the pattern is given reversed, so that no command line here holds it either).
	token := srv.url[strings.Index(srv.url, "tkn=")+4:]
	reversed := []rune(token)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	search := "echo '" + string(reversed) + "' | rev > /tmp/pat; grep -rlF -f /tmp/pat /home /tmp /workspace /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | grep -vx /tmp/pat; echo searched"
	if code, out, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", search); code != 0 || strings.TrimSpace(out) != "searched" {
		t.Errorf("the token is visible inside the container: exit %d, %q\n%s", code, out, stderr)
	}

	checkIDEPageCannotLeave(t, srv, w)

	// Ctrl-C: code-server stops inside, the workspace stays up.
	if code := srv.stop(t); code != 0 || !strings.Contains(srv.stderr.String(), "workspace ide is still up") {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, srv.stderr.String())
	}
	if code, out, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", "ps -ef | grep -v grep | grep -c httpd"); code != 1 || strings.TrimSpace(out) != "0" {
		t.Errorf("after Ctrl-C code-server still runs: exit %d, %q\n%s", code, out, stderr)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+srv.port, 2*time.Second); err == nil {
		t.Error("the IDE's port still answers after Ctrl-C")
	}
	relays := 0
	evDir := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
	entries, _ := os.ReadDir(evDir)
	for _, en := range entries {
		st, err := evidence.ReadUnverified(filepath.Join(evDir, en.Name()))
		if err != nil || st.Predicate.Session.Workspace == nil || st.Predicate.Session.Workspace.Action != "join" {
			continue
		}
		if strings.Contains(strings.Join(st.Predicate.Command, " "), "connect 127.0.0.1:13337") {
			relays++
			if relays == 1 {
				p := verifyBundle(t, w, filepath.Join(evDir, en.Name()))
				if p.Checks == nil || p.Checks.Inside != "passed" || p.Checks.Inspect != "as-planned" {
					t.Errorf("a relay's checks: %+v", p.Checks)
				}
			}
		}
	}
	if relays == 0 {
		t.Errorf("no relay left a join's bundle in %s", evDir)
	}

	// An impostor: the agent listens on code-server's port first. up --ide refuses to serve
	// whatever answers there, and says why.
	if code, out, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", "httpd -p 127.0.0.1:13337 -h /tmp && echo listening"); code != 0 || !strings.Contains(out, "listening") {
		t.Fatalf("the impostor: exit %d %q\n%s", code, out, stderr)
	}
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "ide", "--ide"); code == 0 ||
		!strings.Contains(errOut.String(), "already listens on 127.0.0.1:13337") || ideURL.MatchString(errOut.String()) {
		t.Errorf("up --ide with an impostor on the port: exit %d\n%s", code, errOut)
	}
	if code, _, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", "killall httpd; sleep 0.5; ! pidof httpd"); code != 0 {
		t.Fatalf("stop the impostor: exit %d\n%s", code, stderr)
	}

	fresh := &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	// ended checks that a serving ended with a refusal naming why, and that nothing was
	// relayed meanwhile.
	ended := func(srv *ideServing, why string) {
		t.Helper()
		resp, err := fresh.Get("http://127.0.0.1:" + srv.port + "/hello.txt")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 || strings.Contains(string(b), "hello") || strings.Contains(string(b), "IMPOSTOR") {
				t.Errorf("relayed after %s: %d %q", why, resp.StatusCode, b)
			}
		}
		select {
		case <-srv.done:
			if srv.exit != ExitRefused || !strings.Contains(srv.stderr.String(), why) {
				t.Errorf("the serving ended with exit %d (want %d naming %q):\n%s", srv.exit, ExitRefused, why, srv.stderr.String())
			}
		case <-time.After(time.Minute):
			t.Fatalf("serving went on after %s:\n%s", why, srv.stderr.String())
		}
	}

	// While served, the agent stops code-server's server and listens on its port: the next
	// relay finds the port held outside the served program's process group, refuses, and the
	// serving ends.
	srv = serveIDEInBackground(t, e, w, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "ide", "--ide")
	takeover := "mkdir -p /tmp/imp && echo IMPOSTOR > /tmp/imp/hello.txt && kill $(pidof httpd) && sleep 0.5 && httpd -p 127.0.0.1:13337 -h /tmp/imp && echo took"
	if code, out, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", takeover); code != 0 || !strings.Contains(out, "took") {
		t.Fatalf("take the port over: exit %d %q\n%s", code, out, stderr)
	}
	ended(srv, "took its port")
	if code, _, stderr := cli("exec", "--name", "ide", "--", "sh", "-c", "killall httpd; sleep 0.5; ! pidof httpd"); code != 0 {
		t.Fatalf("stop the impostor: exit %d\n%s", code, stderr)
	}

	// Serving again, then the container is changed behind sourceosctl's back: the next
	// connection is refused, and the serving ends with the refusal.
	srv = serveIDEInBackground(t, e, w, "--profile", w.profile, "am", "up", "--repo", w.repo, "--name", "ide", "--ide")
	if out, err := e.Podman("update", "--memory", "1g", agentmachine.WorkspaceContainer("ide")); err != nil {
		t.Fatalf("podman update: %v\n%s", err, out)
	}
	ended(srv, "memory limit")
}

// checkIDEInBrowser serves real code-server (image build --ide's) for a workspace on the
// embedded default profile and opens the printed address in headless Chromium: VS Code's
// workbench renders, rooted at the workspace (its file in the explorer); a screenshot is kept
// with the test's output. Ctrl-C ends the serving with exit 0.
func checkIDEInBrowser(t *testing.T, e *podmantest.Env, w *workspace) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(w.repo, "ide-check.txt"), []byte("seen in the browser\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		_ = os.Chown(filepath.Join(w.repo, "ide-check.txt"), 1000, 1000)
	}
	workspaceCLI(t, e, w, "browser") // its containers go at the end
	srv := serveIDEInBackground(t, e, w, "agent-machine", "up", "--repo", w.repo, "--name", "browser", "--ide")
	b := chromiumtest.Start(t)
	page := b.Open(t, srv.url)
	page.WaitFor(`document.querySelector('.monaco-workbench') && document.querySelector('.explorer-folders-view') && document.body.innerText.includes('ide-check.txt')`, 3*time.Minute)
	var title string
	if err := page.Eval("document.title", &title); err != nil || !strings.Contains(title, "workspace") {
		t.Errorf("the IDE's title %q (%v): not rooted at the workspace", title, err)
	}
	shot := filepath.Join(cmp.Or(os.Getenv("SOURCEOSCTL_TEST_ARTIFACTS"), t.TempDir()), "ide.png")
	page.Screenshot(shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 20000 {
		t.Errorf("screenshot %s: %v (a rendered workbench is tens of kilobytes)", shot, err)
	}
	t.Logf("the IDE as Chromium renders it: %s", shot)
	if code := srv.stop(t); code != 0 {
		t.Errorf("Ctrl-C: exit %d\n%s", code, srv.stderr.String())
	}
}

// leakPage is web content an agent could write (a webview, a previewed file): in the user's
// browser it tries to send data to the origin after '#', by fetch and by an image.
const leakPage = `<!doctype html><title>waiting</title><script>
const target = location.hash.slice(1);
Promise.all([
  fetch(target + "/fetch?data=workspace").then(() => "sent", () => "blocked"),
  new Promise(r => { const i = new Image(); i.onload = () => r("sent"); i.onerror = () => r("blocked"); i.src = target + "/img?data=workspace"; }),
]).then(v => { document.title = "done " + v.join(" "); });
</script>`

// checkIDEPageCannotLeave opens, in headless Chromium holding the IDE's cookie, a page from
// the workspace that tries to reach another origin on this host: the IDE's content policy
// blocks both the fetch and the image, and nothing arrives. The same page served without the
// policy reaches it — the control that shows the browser would otherwise let it out.
func checkIDEPageCannotLeave(t *testing.T, srv *ideServing, w *workspace) {
	t.Helper()
	var hits sync.Map
	outside := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		rw.Header().Set("Access-Control-Allow-Origin", "*")
		if r.URL.Path == "/img" {
			rw.Header().Set("Content-Type", "image/gif")
			_, _ = rw.Write([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
		}
	}))
	defer outside.Close()
	control := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, leakPage)
	}))
	defer control.Close()

	b := chromiumtest.Start(t)
	page := b.Open(t, srv.url) // the token, then the cookie, then the redirect without it
	page.WaitFor(`location.href === "http://127.0.0.1:`+srv.port+`/" && document.readyState === "complete"`, time.Minute)
	page.Navigate("http://127.0.0.1:" + srv.port + "/page.html#" + outside.URL)
	page.WaitFor(`document.title.startsWith("done")`, time.Minute)
	var title string
	_ = page.Eval("document.title", &title)
	if title != "done blocked blocked" {
		t.Errorf("workspace content in the IDE's origin reached another origin: %q", title)
	}
	time.Sleep(time.Second)
	hits.Range(func(k, _ any) bool {
		t.Errorf("another origin received %s from the IDE's page", k)
		return true
	})

	page.Navigate(control.URL + "/page.html#" + outside.URL)
	page.WaitFor(`document.title.startsWith("done")`, time.Minute)
	_ = page.Eval("document.title", &title)
	if _, ok := hits.Load("/fetch"); title != "done sent sent" || !ok {
		t.Errorf("control: the same page without the IDE's policy gave %q (fetch arrived: %v); the check above proves nothing", title, ok)
	}
}
