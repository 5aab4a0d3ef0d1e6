package agentmachine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/profile"
)

func TestIDERef(t *testing.T) {
	for in, want := range map[string]string{
		"localhost/sourceos/agent-workspace:latest":          "localhost/sourceos/agent-workspace:ide",
		"localhost/sourceos/agent-workspace":                 "localhost/sourceos/agent-workspace:ide",
		"localhost/sourceos/agent-workspace:go-1.19":         "localhost/sourceos/agent-workspace:go-1.19_ide",
		"localhost/sourceos/agent-workspace:go-1.19_ide":     "localhost/sourceos/agent-workspace:go-1.19_ide",
		"localhost/sourceos/agent-workspace:ide":             "localhost/sourceos/agent-workspace:ide",
		"localhost/team/agent:1":                             "localhost/team/agent:1", // not ours: must have code-server itself
		"registry.example:5000/sourceos/agent-workspace:1.0": "registry.example:5000/sourceos/agent-workspace:1.0",
		"localhost/sourceos/agent-workspace@sha256:0000":     "localhost/sourceos/agent-workspace@sha256:0000",
	} {
		if got := image.IDERef(in); got != want {
			t.Errorf("IDERef(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestIDEBuildHint(t *testing.T) {
	for ref, want := range map[string]string{
		"localhost/sourceos/agent-workspace:ide":                     BuildImageCommand + " --ide",
		"localhost/sourceos/agent-workspace:go-1.19_python-3.11_ide": BuildImageCommand + " --stack go@1.19 --stack python@3.11 --ide",
	} {
		if got := ideBuildHint(ref); got != want {
			t.Errorf("ideBuildHint(%s) = %q, want %q", ref, got, want)
		}
	}
	for ref, want := range map[string]string{
		"localhost/sourceos/agent-workspace:latest":                            BuildImageCommand,
		"localhost/sourceos/agent-workspace:ruby-3.1":                          BuildImageCommand + " --stack ruby@3.1",
		"localhost/sourceos/agent-workspace:go-1.19_node-18":                   BuildImageCommand + " --stack go@1.19 --stack node@18",
		"localhost/sourceos/agent-workspace:mine":                              "",
		"localhost/sourceos/agent-workspace@sha256:" + strings.Repeat("a", 64): "",
		"localhost/team/agent:1":                                               "",
	} {
		if got, ok := BuildCommand(ref); got != want || ok != (want != "") {
			t.Errorf("BuildCommand(%s) = %q, %v, want %q", ref, got, ok, want)
		}
	}
	if got := ideBuildHint("localhost/team/agent:1"); !strings.Contains(got, "name an image with code-server") {
		t.Errorf("another image's hint = %q", got)
	}
}

func ideProfile(t *testing.T, imageLine string) *profile.Profile {
	t.Helper()
	p, err := profile.Parse("p.yaml", []byte("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: t}\nspec:\n  host: {os: linux}\n  image: "+imageLine+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanIDE: up --ide plans the IDE variant of the profile's image and code-server's
// command; it is refused outside a workspace and where a digest pins the profile's image.
func TestPlanIDE(t *testing.T) {
	p := ideProfile(t, "{ref: localhost/sourceos/agent-workspace:latest}")
	pl := &Plan{Image: ImageRef{Ref: p.Spec.Image.Ref}}
	if err := planIDE(p, SessionRequest{Workspace: "app", IDE: true}, pl); err != nil {
		t.Fatal(err)
	}
	if pl.Image.Ref != "localhost/sourceos/agent-workspace:ide" || pl.IDE == nil || pl.IDE.Listen != "127.0.0.1:13337" {
		t.Fatalf("plan: image %s, ide %+v", pl.Image.Ref, pl.IDE)
	}
	cmd := strings.Join(pl.IDE.Command, " ")
	for _, want := range []string{"--bind-addr 127.0.0.1:13337", "--auth none", "--disable-telemetry", "--disable-update-check", " " + p.Spec.Workspace.MountPath} {
		if !strings.Contains(cmd, want) {
			t.Errorf("code-server's command %q lacks %q", cmd, want)
		}
	}

	pl = &Plan{}
	if err := planIDE(p, SessionRequest{Workspace: "app"}, pl); err != nil || pl.IDE != nil {
		t.Fatalf("without --ide: %v, %+v", err, pl.IDE)
	}
	var ie *InputError
	if err := planIDE(p, SessionRequest{IDE: true}, &Plan{}); !errors.As(err, &ie) || ie.Flag != "--ide" {
		t.Fatalf("a session with --ide: %v", err)
	}
	pinned := ideProfile(t, `{ref: localhost/sourceos/agent-workspace:latest, digest: "sha256:`+strings.Repeat("0", 64)+`"}`)
	if err := planIDE(pinned, SessionRequest{Workspace: "app", IDE: true}, &Plan{}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "by digest") {
		t.Fatalf("a pinned image: %v", err)
	}
	// An image of the profile's own is used as it is (checked for code-server when present).
	own := ideProfile(t, "{ref: localhost/team/ide:1}")
	pl = &Plan{Image: ImageRef{Ref: "localhost/team/ide:1"}}
	if err := planIDE(own, SessionRequest{Workspace: "app", IDE: true}, pl); err != nil || pl.Image.Ref != "localhost/team/ide:1" {
		t.Fatalf("own image: %v, %s", err, pl.Image.Ref)
	}
	if err := checkIDEImage(pl, container.Image{}); err == nil || !strings.Contains(err.Error(), "no code-server") {
		t.Fatalf("an image without the label: %v", err)
	}
	if err := checkIDEImage(pl, container.Image{Labels: map[string]string{image.IDELabel: "4.89.1"}}); err != nil {
		t.Fatal(err)
	}
}

func TestIDETokenIsKeptAndPrivate(t *testing.T) {
	d := Dirs{State: t.TempDir()}
	a, err := d.IDEToken("app")
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.IDEToken("app")
	if err != nil || a != b || len(a) < 40 {
		t.Fatalf("tokens %q, %q (%v): a workspace keeps one", a, b, err)
	}
	other, _ := d.IDEToken("other")
	if other == a {
		t.Fatal("two workspaces share a token")
	}
	fi, err := os.Stat(filepath.Join(d.WorkspaceSSH("app").Dir, "ide-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
}

// ideBackend stands for code-server: it records what reached it.
type ideBackend struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (b *ideBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r.Clone(context.Background()))
	b.mu.Unlock()
	if r.Header.Get("Upgrade") == "websocket" {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		_, _ = rw.WriteString("echo " + line)
		_ = rw.Flush()
		return
	}
	// What a server the agent runs could answer: a cookie for every port of 127.0.0.1, a
	// weaker referrer policy.
	w.Header().Set("Set-Cookie", "sourceos-ide-app=junk; Path=/")
	w.Header().Set("Referrer-Policy", "unsafe-url")
	_, _ = io.WriteString(w, "workbench")
}

func (b *ideBackend) requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.seen...)
}

// TestIDEProxy: nothing reaches code-server without the token; the token, once given, becomes
// an HttpOnly cookie that is never passed on; other host names (DNS rebinding) and other
// origins are refused even with it; WebSockets are relayed.
func TestIDEProxy(t *testing.T) {
	backend := &ideBackend{}
	be := httptest.NewServer(backend)
	defer be.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	px := &ideProxy{name: "app", token: "tok-" + strings.Repeat("x", 40), port: port,
		dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", be.Listener.Addr().String())
		}}
	srv := &http.Server{Handler: px.handler()}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	cookie := "sourceos-ide-app=" + px.token

	for _, tc := range []struct {
		name string
		path string
		hdr  map[string]string
		code int
	}{
		{"no token", "/", nil, 401},
		{"wrong token", "/?tkn=guess", nil, 401},
		{"wrong cookie", "/", map[string]string{"Cookie": "sourceos-ide-app=guess"}, 401},
		{"another workspace's cookie name", "/", map[string]string{"Cookie": "sourceos-ide-other=" + px.token}, 401},
		{"rebound host name", "/", map[string]string{"Cookie": cookie, "Host": "evil.example:" + strconv.Itoa(port)}, 403},
		{"rebound host with token", "/?tkn=" + px.token, map[string]string{"Host": "evil.example:" + strconv.Itoa(port)}, 403},
		{"another origin", "/", map[string]string{"Cookie": cookie, "Origin": "http://evil.example"}, 403},
		{"another port's origin", "/", map[string]string{"Cookie": cookie, "Origin": "http://127.0.0.1:1"}, 403},
	} {
		if resp := do("GET", tc.path, tc.hdr); resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
	}
	if n := len(backend.requests()); n != 0 {
		t.Fatalf("%d refused requests reached code-server", n)
	}

	// The token in the address: a cookie and a redirect to the same place without it.
	resp := do("GET", "/some/path?folder=/workspace&tkn="+px.token, nil)
	loc := resp.Header.Get("Location")
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "sourceos-ide-app" {
			set = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(loc, "tkn") || !strings.HasPrefix(loc, "/some/path?folder=") {
		t.Fatalf("token in the address: status %d, location %q", resp.StatusCode, loc)
	}
	if set == nil || set.Value != px.token || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" {
		t.Fatalf("cookie %+v", set)
	}

	// With the cookie: relayed, with the Host the browser used and without the token.
	resp = do("GET", "/", map[string]string{"Cookie": "theme=dark; " + cookie + "; lang=en", "Origin": base})
	if resp.StatusCode != 200 {
		t.Fatalf("with the cookie: status %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "*") {
		t.Errorf("a relayed answer's content policy %q does not keep the page to the IDE", csp)
	}
	if sc, rp := resp.Header.Values("Set-Cookie"), resp.Header.Values("Referrer-Policy"); len(sc) != 0 || strings.Join(rp, ",") != "no-referrer" {
		t.Errorf("the container's answer set cookies %q or the referrer policy %q", sc, rp)
	}
	got := backend.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests reached code-server", len(got))
	}
	if c := strings.Join(got[0].Header.Values("Cookie"), "|"); c != "" {
		t.Errorf("code-server saw cookies %q (the browser sends every 127.0.0.1 cookie: none may enter)", c)
	}
	if got[0].Host != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("code-server saw host %q", got[0].Host)
	}
	if resp := do("GET", "/", map[string]string{"Cookie": cookie, "Host": "localhost:" + strconv.Itoa(port)}); resp.StatusCode != 200 {
		t.Errorf("localhost:PORT: status %d", resp.StatusCode)
	}

	// Paths not relayed even with the cookie: code-server's port proxy (a server the agent runs
	// would answer on the IDE's origin), and other spellings of paths.
	before := len(backend.requests())
	// raw sends a request line as written (no client cleans it up).
	raw := func(target string) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: 127.0.0.1:"+strconv.Itoa(port)+"\r\nCookie: "+cookie+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/proxy/8000/", "/proxy", "/absproxy/8000/x", "//proxy/8000/", "/./proxy/8000/", "/a/../proxy/8000/", "/%70roxy/8000/", "/%2Fproxy/8000/", "/static//x"} {
		if resp := raw(p); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", p, resp.StatusCode)
		}
	}
	if n := len(backend.requests()); n != before {
		t.Errorf("%d refused paths reached code-server", n-before)
	}
	if resp := do("GET", "/vscode-remote-resource?path=/workspace/page.html", map[string]string{"Cookie": cookie}); !strings.Contains(strings.Join(resp.Header.Values("Content-Security-Policy"), ";"), "sandbox") {
		t.Errorf("a container file opened as a page may run scripts: %q", resp.Header.Values("Content-Security-Policy"))
	}
	// The token's redirect stays on this origin.
	if resp := raw("//evil.example/?tkn=" + px.token); resp.Header.Get("Location") != "/evil.example/" {
		t.Errorf("//evil.example/?tkn=: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A WebSocket (VS Code's connection to its server) is relayed both ways.
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:"+strconv.Itoa(port)+"\r\nCookie: "+cookie+"\r\nOrigin: "+base+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	_, _ = io.WriteString(conn, "ping\n")
	if echo, _ := br.ReadString('\n'); echo != "echo ping\n" {
		t.Fatalf("through the WebSocket: %q", echo)
	}
}

// TestReadyWatch: the helper's ready line is recognised and kept out of the log, even when
// it arrives in pieces; everything else is logged.
func TestReadyWatch(t *testing.T) {
	var log strings.Builder
	r := &readyWatch{ready: make(chan struct{}), log: &log}
	for _, piece := range []string{"code-server starting\nsourceos-he", "lper: serving 127.0.0.1:13337 pgid 42", "\nHTTP server listening\n"} {
		_, _ = r.Write([]byte(piece))
	}
	select {
	case <-r.ready:
	default:
		t.Fatal("the ready line was not recognised")
	}
	if r.group() != 42 {
		t.Errorf("the served program's group: %d", r.group())
	}
	if log.String() != "code-server starting\nHTTP server listening\n" {
		t.Fatalf("log %q", log.String())
	}
}
