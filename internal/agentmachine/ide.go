package agentmachine

// The browser IDE (up --ide): code-server, from an image built with image build --ide, runs
// inside the workspace's container on its loopback — the container has no network — started
// through the helper's serve, which says when it listens and stops it when sourceosctl goes.
// sourceosctl serves it on this host's loopback only: an HTTP reverse proxy that admits a
// browser holding the workspace's token (given once in the URL, then an HttpOnly cookie) and
// relays each connection it makes to code-server through the helper's connect inside the
// container, as ssh -L does — every relay a join, checked and recorded. The token never
// reaches the container; a request for another host name (DNS rebinding) or from another
// origin is refused before anything is relayed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// IDEPlan is the browser IDE a workspace serves (up --ide).
type IDEPlan struct {
	// Image has code-server (image.IDELabel).
	Image string `json:"image"`
	// Listen is where code-server listens: the container's loopback.
	Listen string `json:"listen"`
	// Command starts it, through the helper's serve.
	Command []string `json:"command"`
}

const (
	// ideListen is code-server's address inside the container.
	ideListen = "127.0.0.1:13337"
	// ideBinary is where image build --ide installs code-server.
	ideBinary = "/opt/code-server/node_modules/.bin/code-server"
	// ideExtensions is code-server's extensions directory: empty and on the read-only root,
	// so nothing the agent writes becomes an extension — whose code would run in the user's
	// browser as well as in the container.
	ideExtensions = "/opt/code-server/extensions"
	// serveCommand is the helper's subcommand that runs a server until its standard input
	// ends, saying on standard output when it listens.
	serveCommand = "serve"
	// serveReady begins the line serve prints once the server listens.
	serveReady = "sourceos-helper: serving "
	// ideStart bounds waiting for code-server to listen (its first start unpacks nothing, but
	// a loaded machine is slow).
	ideStart = 3 * time.Minute
)

// ideCommand is code-server's command line: no authentication of its own (it is reachable
// only through sourceosctl's proxy, which checks the token), nothing that calls home, rooted
// at the workspace.
func ideCommand(workdir string) []string {
	return []string{ideBinary, "--bind-addr", ideListen, "--auth", "none",
		"--disable-telemetry", "--disable-update-check", "--extensions-dir", ideExtensions,
		"--disable-getting-started-override", "--ignore-last-opened", workdir}
}

// planIDE makes a workspace's plan serve the IDE: its image becomes the profile image's IDE
// variant (image build --ide makes it), unless the profile names an image of its own, which
// must then have code-server.
func planIDE(p *profile.Profile, req SessionRequest, pl *Plan) error {
	if !req.IDE {
		return nil
	}
	if req.Workspace == "" {
		return &InputError{Flag: "--ide", Err: errors.New("the IDE is served from a workspace"), Fix: "sourceosctl agent-machine up --ide"}
	}
	ref := image.IDERef(p.Spec.Image.Ref)
	if ref != p.Spec.Image.Ref {
		if p.Spec.Image.Digest != "" {
			return &InputError{Flag: "--ide", Err: fmt.Errorf("the profile pins %s by digest, and its IDE variant %s is another image", p.Spec.Image.Ref, ref),
				Fix: "name an image with code-server (image build --ide --tag …) and its digest in spec.image, or leave out the digest"}
		}
		pl.Image = ImageRef{Ref: ref}
	}
	pl.IDE = &IDEPlan{Image: ref, Listen: ideListen, Command: ideCommand(p.Spec.Workspace.MountPath)}
	pl.Notes = append(pl.Notes, fmt.Sprintf("browser IDE: code-server from %s runs inside on %s (the container's loopback; no network), served on this host's loopback only, behind the workspace's token; each connection to it is a join, checked and recorded", ref, ideListen))
	return nil
}

// checkIDEImage refuses an image without code-server for a plan that serves it.
func checkIDEImage(pl *Plan, img container.Image) error {
	if pl.IDE == nil || img.Labels[image.IDELabel] != "" {
		return nil
	}
	return &MissingError{Component: "browser IDE", Detail: fmt.Sprintf("image %s has no code-server (no %s label)", pl.Image.Ref, image.IDELabel),
		Fix: ideBuildHint(pl.Image.Ref)}
}

// ideBuildHint says how to build the IDE variant ref names.
func ideBuildHint(ref string) string {
	if hint, ok := BuildCommand(ref); ok {
		return hint
	}
	return BuildImageCommand + " --ide (and the --stack options of your image), or name an image with code-server in spec.image"
}

// IDEToken is the workspace's IDE token: made at the first up --ide, kept with its SSH keys
// until rm, so a bookmarked address stays valid across down and up.
func (d Dirs) IDEToken(name string) (string, error) {
	files := d.WorkspaceSSH(name)
	path := filepath.Join(files.Dir, "ide-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	return token, atomicfile.Write(path, []byte(token+"\n"), 0o600, atomicfile.Options{})
}

// ServeLog is where a dev server's output goes while served (serve).
func (d Dirs) ServeLog(name string) string {
	return filepath.Join(d.WorkspacesDir(), name+".serve.log")
}

// IDELog is where code-server's own output goes while served.
func (d Dirs) IDELog(name string) string { return filepath.Join(d.WorkspacesDir(), name+".ide.log") }

// IDEServing is how to serve a workspace's IDE.
type IDEServing struct {
	// Listener accepts the browser's connections; it must be on this host's loopback.
	Listener net.Listener
	// Ready is called with the address to open (token included) once code-server listens.
	Ready func(url string)
	// Log receives code-server's output.
	Log io.Writer
}

// ServeIDE starts code-server in the running workspace w and serves it on o.Listener until
// ctx ends (Ctrl-C) or code-server does; then code-server is stopped, the workspace stays up.
// A relay the workspace refuses (changed behind our back) ends the serving with that error.
func (s *Session) ServeIDE(ctx context.Context, p *profile.Profile, w *Workspace, o IDEServing) error {
	if !w.Running() {
		return &WorkspaceDownError{Name: w.Name, Why: "it is down"}
	}
	if w.Plan.IDE == nil {
		return &InputError{Flag: "--ide", Err: fmt.Errorf("workspace %s was brought up without the IDE", w.Name),
			Fix: "sourceosctl agent-machine up --fresh --ide --name " + w.Name + " (its work is kept on its branch)"}
	}
	addr, ok := o.Listener.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() {
		return fmt.Errorf("the IDE is served on this host's loopback only, not on %s", o.Listener.Addr())
	}
	token, err := s.Dirs.IDEToken(w.Name)
	if err != nil {
		return fmt.Errorf("workspace %s: its IDE token: %w", w.Name, err)
	}
	sv, err := s.startServed(ctx, p, w, servedProgram{What: "code-server", Listen: w.Plan.IDE.Listen, Command: w.Plan.IDE.Command,
		Log: o.Log, LogPath: s.Dirs.IDELog(w.Name), Start: ideStart,
		Fix: "sourceosctl agent-machine up --fresh --ide --name " + w.Name + " (its work is kept on its branch)"})
	if err != nil {
		return err
	}
	px := &ideProxy{name: w.Name, token: token, port: addr.Port}
	px.dial = func(context.Context, string, string) (net.Conn, error) { return sv.relay(), nil }
	srv := &http.Server{Handler: px.handler(), ReadHeaderTimeout: 30 * time.Second, ErrorLog: nil}
	defer srv.Close() // whichever way the serving ends, no connection outlives it
	serving := make(chan error, 1)
	go func() { serving <- srv.Serve(o.Listener) }()
	if o.Ready != nil {
		o.Ready(px.url())
	}
	end := sv.wait(ctx, serving, func() {
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) // WebSockets are hijacked: the relays' end closes them
	})
	_ = srv.Close()
	return end
}

// relayConn is the proxy's end of a relay: it reads what the join's command writes (the
// server's bytes) and writes the command's standard input. Each direction ends on its own, as
// a TCP connection's halves do: closing it ends the command's input and drains (rather than
// breaks) what the command still writes, so neither side sees a broken pipe when the other
// goes first.
type relayConn struct {
	fromJoin *io.PipeReader
	toJoin   *io.PipeWriter
	once     sync.Once
}

// newRelayConn returns the proxy's end, and the join's standard input and output.
func newRelayConn() (conn *relayConn, in io.Reader, out io.WriteCloser) {
	fr, fw := io.Pipe()
	tr, tw := io.Pipe()
	return &relayConn{fromJoin: fr, toJoin: tw}, tr, fw
}

func (c *relayConn) Read(p []byte) (int, error)  { return c.fromJoin.Read(p) }
func (c *relayConn) Write(p []byte) (int, error) { return c.toJoin.Write(p) }
func (c *relayConn) Close() error {
	c.once.Do(func() {
		_ = c.toJoin.Close()
		go func() { _, _ = io.Copy(io.Discard, c.fromJoin) }()
	})
	return nil
}
func (c *relayConn) LocalAddr() net.Addr              { return relayAddr{} }
func (c *relayConn) RemoteAddr() net.Addr             { return relayAddr{} }
func (c *relayConn) SetDeadline(time.Time) error      { return nil }
func (c *relayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *relayConn) SetWriteDeadline(time.Time) error { return nil }

type relayAddr struct{}

func (relayAddr) Network() string { return "sourceos-relay" }
func (relayAddr) String() string  { return ideListen }

// serveWhy passes code-server's standard error on to the log and keeps the helper's own
// last word about it (a port already taken, an exit), for the error the user sees.
type serveWhy struct {
	log  io.Writer
	mu   sync.Mutex
	last string
	buf  []byte
}

func (s *serveWhy) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	eachLine(&s.buf, p, func(line string) {
		if why, ok := strings.CutPrefix(line, "sourceos-helper: serve: "); ok {
			s.last = why
		}
	})
	return s.log.Write(p)
}

func (s *serveWhy) why() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// exitImpostor is the helper's connect exit code when the port is held by a process outside
// the served program's group.
const exitImpostor = 123

// readyWatch passes the helper's serve output on and closes ready at its ready line
// ("ADDR pgid N"), keeping the served program's process group.
type readyWatch struct {
	ready chan struct{}
	log   io.Writer
	once  sync.Once
	buf   []byte
	pgid  int
}

// group is the served program's process group (known once ready is closed).
func (r *readyWatch) group() int { return r.pgid }

func (r *readyWatch) Write(p []byte) (int, error) {
	eachLine(&r.buf, p, func(line string) {
		rest, ok := strings.CutPrefix(line, serveReady)
		if !ok {
			fmt.Fprintln(r.log, line)
			return
		}
		if _, g, ok := strings.Cut(rest, " pgid "); ok {
			if n, err := strconv.Atoi(g); err == nil && n > 1 {
				r.once.Do(func() { r.pgid = n; close(r.ready) })
			}
		}
	})
	return len(p), nil
}

// eachLine appends p to *buf and calls fn with each complete line, keeping the rest.
func eachLine(buf *[]byte, p []byte, fn func(line string)) {
	*buf = append(*buf, p...)
	for {
		i := bytes.IndexByte(*buf, '\n')
		if i < 0 {
			return
		}
		line := string((*buf)[:i])
		*buf = (*buf)[i+1:]
		fn(line)
	}
}

// ideProxy admits the browser holding the token and relays it to code-server.
type ideProxy struct {
	name  string
	token string
	port  int
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ideCSP keeps the page from reaching anything but the IDE itself: what the agent writes can
// become web content (a webview, an extension's page, a file previewed), which runs in the
// user's browser — a browser with the network the container has not. Every fetch, socket,
// script, image, style, font, frame and form goes to this origin (or is inline, blob: or
// data:, which VS Code needs); other pages may not frame it. A browser enforces it on top of
// any policy code-server sends. Top-level navigation is not something CSP can limit, nor
// (until browsers implement webrtc 'block') WebRTC: hence no extensions the agent can write and
// no port proxy — the page runs VS Code's own code.
const ideCSP = "default-src 'self' 'unsafe-inline' 'unsafe-eval' blob: data:; form-action 'self'; frame-ancestors 'self'; base-uri 'self'; webrtc 'block'"

// ideTokenParam carries the token in the address the user opens, once.
const ideTokenParam = "tkn"

func (px *ideProxy) cookie() string { return "sourceos-ide-" + px.name }

func (px *ideProxy) url() string {
	return fmt.Sprintf("http://127.0.0.1:%d/?%s=%s", px.port, ideTokenParam, px.token)
}

// origins are the addresses the IDE answers at.
func (px *ideProxy) hosts() []string {
	p := strconv.Itoa(px.port)
	return []string{"127.0.0.1:" + p, "localhost:" + p}
}

func (px *ideProxy) handler() http.Handler {
	backend := &url.URL{Scheme: "http", Host: ideListen}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backend)
			// The path as checked, re-encoded: no encoding the check did not see.
			r.Out.URL.RawPath = ""
			// code-server compares a WebSocket's Origin with the Host it was asked for.
			r.Out.Host = r.In.Host
			// A browser sends every cookie of 127.0.0.1, whatever its port: this IDE's token,
			// other workspaces' and other local services'. None of them enters the container.
			r.Out.Header.Del("Cookie")
		},
		Transport: &http.Transport{
			DialContext:         px.dial,
			MaxIdleConnsPerHost: 8,
			// Each connection is a join (a podman exec): a page cannot start unbounded ones.
			MaxConnsPerHost:   ideMaxRelays,
			IdleConnTimeout:   90 * time.Second,
			ForceAttemptHTTP2: false,
		},
		ModifyResponse: func(r *http.Response) error {
			// Nor does the container set cookies: one would apply to every port of 127.0.0.1
			// (this IDE's token among them, and other local services').
			r.Header.Del("Set-Cookie")
			r.Header.Del("Referrer-Policy") // the handler's no-referrer stands
			r.Header.Set("X-Content-Type-Options", "nosniff")
			r.Header.Add("Content-Security-Policy", ideCSP)
			if strings.HasPrefix(r.Request.URL.Path, "/vscode-remote-resource") {
				// Files of the container, served for the workbench to show (images, fonts):
				// opened as a page, an HTML file written by the agent runs no script.
				r.Header.Add("Content-Security-Policy", "sandbox")
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "sourceosctl: the workspace did not answer: "+err.Error()+" (the terminal running up --ide says why)", http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		if !px.knownHost(r.Host) {
			http.Error(w, "sourceosctl: this IDE answers only at http://127.0.0.1:"+strconv.Itoa(px.port), http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !px.knownOrigin(o) {
			http.Error(w, "sourceosctl: requests from another origin are refused", http.StatusForbidden)
			return
		}
		if t := r.URL.Query().Get(ideTokenParam); t != "" {
			if !px.tokenOK(t) {
				http.Error(w, "sourceosctl: wrong token: open the address up --ide printed", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: px.cookie(), Value: px.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
			q := r.URL.Query()
			q.Del(ideTokenParam)
			// Always a path on this origin ("//host/" would be another site).
			to := url.URL{Path: "/" + strings.TrimLeft(r.URL.Path, "/"), RawQuery: q.Encode()}
			http.Redirect(w, r, to.String(), http.StatusSeeOther)
			return
		}
		if c, err := r.Cookie(px.cookie()); err != nil || !px.tokenOK(c.Value) {
			http.Error(w, "sourceosctl: open the address up --ide printed (it carries the workspace's token)", http.StatusUnauthorized)
			return
		}
		if refused := idePathRefused(r.URL.Path); refused != "" {
			http.Error(w, "sourceosctl: "+refused, http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// ideMaxRelays bounds the relays (joins) open at once for one IDE.
const ideMaxRelays = 16

// idePathRefused says why a path is not relayed: code-server's port proxy (/proxy/PORT/,
// /absproxy/PORT/) would put whatever a server the agent runs answers — its own pages, scripts
// and headers — on the IDE's origin, in the user's browser; and a path that is not in its
// plain form could reach it by another spelling.
func idePathRefused(p string) string {
	clean := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return "only plain paths are relayed (no //, . or .. segments)"
	}
	for _, prefix := range []string{"/proxy", "/absproxy"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return "code-server's port proxy is not served: it would put a server's own pages on the IDE's origin; use ssh -L (ssh-config) to reach a port in the workspace"
		}
	}
	return ""
}

func (px *ideProxy) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(px.token)) == 1
}

func (px *ideProxy) knownHost(host string) bool {
	for _, h := range px.hosts() {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

func (px *ideProxy) knownOrigin(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Scheme == "http" && u.Path == "" && px.knownHost(u.Host)
}
