package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/tls"
	"crypto/x509"

	"github.com/elazarl/goproxy"

	"github.com/sourceos/sourceosctl/internal/textsafe"
)

// Verdicts recorded for a connection attempt.
const (
	Allowed = "allowed"
	Denied  = "denied"
	Failed  = "failed" // allowed by the policy, but no checked address could be dialled
)

// Event is one connection attempt, as the evidence records it.
type Event struct {
	Time     time.Time     `json:"time"`
	Method   string        `json:"method"` // CONNECT, or the plain HTTP method
	Host     string        `json:"host"`
	Port     int           `json:"port"`
	Address  string        `json:"address,omitempty"` // the address dialled (or refused)
	Verdict  string        `json:"verdict"`
	Rule     string        `json:"rule,omitempty"`
	Source   string        `json:"source,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	BytesOut int64         `json:"bytesOut"` // from the container to the destination
	BytesIn  int64         `json:"bytesIn"`
	Duration time.Duration `json:"durationNs"`
	// Intercepted marks a connection the gateway made for requests it read (TLS ended with
	// the session's CA, to inject a secret); every other connection is a tunnel it cannot read.
	Intercepted bool `json:"intercepted,omitempty"`
}

// Gateway is one session's egress proxy.
type Gateway struct {
	Policy Policy
	// Resolve looks a name up (net.DefaultResolver.LookupNetIP when nil); tests resolve
	// names to chosen addresses to play DNS rebinding.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Own reports the host's own addresses (refused like private ones); nil: none.
	Own func(netip.Addr) bool
	// OnDeny is told each refusal as it happens (the session prints one line).
	OnDeny func(Event)
	// DialTimeout bounds each dial (10 s when zero).
	DialTimeout time.Duration
	// MaxRecords and MaxDestinations bound what is kept (see DefaultMaxRecords).
	MaxRecords, MaxDestinations int
	// Inject are the secrets put into requests to their hosts; CA (required with Inject)
	// signs the certificates those hosts are intercepted with. Every other host is a tunnel.
	Inject []Injection
	CA     *CA
	// UpstreamRoots verifies intercepted hosts' certificates (the system's when nil).
	UpstreamRoots *x509.CertPool

	inj *injector

	mu        sync.Mutex
	events    []*Event
	summary   Summary
	destIndex map[string]int
	open      sync.WaitGroup
	once      sync.Once
	server    *http.Server
	transport *http.Transport // plain HTTP's connections to destinations
	live      map[*countedConn]bool
	// connections accepted, requests begun (the parser read a byte of one), requests the
	// proxy handled: see Summary.
	connections, requests, handled int64
}

// openConnections names the connections still open, for the error that says so.
func (g *Gateway) openConnections() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for c := range g.live {
		out = append(out, fmt.Sprintf("%s %s:%d since %s", c.e.Method, c.e.Host, c.e.Port, c.e.Time.Format(time.RFC3339)))
	}
	sort.Strings(out)
	return out
}

// Events returns the itemized attempts (the first MaxRecords), in the order they began; a
// connection still open is reported with the bytes it has moved.
func (g *Gateway) Events() []Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Event, len(g.events))
	for i, e := range g.events {
		out[i] = *e
		out[i].BytesIn, out[i].BytesOut = atomic.LoadInt64(&e.BytesIn), atomic.LoadInt64(&e.BytesOut)
	}
	return out
}

// record counts an attempt and itemizes it while under the limit; it returns where the
// attempt's bytes are summed (see tally).
func (g *Gateway) record(e *Event) int {
	// What a client named is the agent's text: it is printed and signed only escaped.
	e.Host, e.Reason = textsafe.String(e.Host), textsafe.String(e.Reason)
	g.mu.Lock()
	dest := g.tally(e)
	if len(g.events) < g.limit(g.MaxRecords, DefaultMaxRecords) {
		g.events = append(g.events, e)
	}
	g.mu.Unlock()
	if e.Verdict == Denied && g.OnDeny != nil {
		g.OnDeny(*e)
	}
	return dest
}

// Serve answers proxy requests on l until Shutdown.
func (g *Gateway) Serve(l net.Listener) error {
	g.once.Do(g.init)
	err := g.server.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes every connection and waits for their records.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.once.Do(g.init)
	err := g.server.Close() // tunnels are hijacked: Close does not wait for them
	done := make(chan struct{})
	go func() { g.open.Wait(); close(done) }()
	// Plain HTTP requests leave kept-alive connections to their destinations idle in the
	// transport; a request finishing meanwhile can return one, so they are closed until
	// every connection is.
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		g.transport.CloseIdleConnections()
		select {
		case <-done:
			return err
		case <-ctx.Done():
			return errors.Join(err, fmt.Errorf("egress gateway: connections still open (%s): %w", strings.Join(g.openConnections(), ", "), ctx.Err()))
		case <-time.After(wait):
		}
	}
}

// init builds the proxy; it runs once, at the first Serve or Shutdown.
func (g *Gateway) init() {
	p := goproxy.NewProxyHttpServer()
	p.Logger = discard{}
	g.inj = &injector{list: g.Inject, refused: func(l *LaunderingError, method string) {
		l.event = &Event{Time: time.Now(), Method: method, Host: l.Host, Port: l.Port, Verdict: Denied, Rule: "secret " + l.Secret, Source: "secret injection", Reason: l.Error()}
		g.record(l.event)
	}}
	g.transport = &http.Transport{Proxy: nil, DialContext: g.dialPlain, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 4,
		TLSClientConfig: &tls.Config{RootCAs: g.UpstreamRoots, MinVersion: tls.VersionTLS12}}
	p.Tr = g.transport
	if g.CA != nil {
		p.CertStore = &g.CA.store
	}
	p.ConnectDialWithReq = func(req *http.Request, _, addr string) (net.Conn, error) {
		return g.dial(req.Context(), http.MethodConnect, addr)
	}
	p.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if h, port, err := splitHostPort(host); err == nil {
			if err := g.inj.checkHost(h, port, http.MethodConnect); err != nil {
				ctx.Resp = denial(ctx.Req, g.refusedEvent(err))
				return goproxy.RejectConnect, host
			}
		}
		if e := g.decide(http.MethodConnect, host); e != nil {
			ctx.Resp = denial(ctx.Req, e)
			return goproxy.RejectConnect, host
		}
		// Only a host a secret is injected for is intercepted; the dial of each request
		// read inside decides and records again.
		if h, port, err := splitHostPort(host); err == nil && g.CA != nil && g.inj.interceptFor(h, port) {
			ctx.UserData = interception{host: h, port: port}
			return &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&g.CA.cert)}, host
		}
		return goproxy.OkConnect, host
	})
	p.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if in, ok := ctx.UserData.(interception); ok {
			return g.intercepted(r, in)
		}
		host := r.URL.Host
		if r.URL.Port() == "" {
			host = net.JoinHostPort(r.URL.Hostname(), "80")
		}
		if r.URL.Scheme != "http" {
			return r, denial(r, g.refuse(r.Method, host, fmt.Sprintf("%s: only http:// URLs are proxied as plain requests; a client must tunnel %s:// with CONNECT", r.URL.Redacted(), r.URL.Scheme)))
		}
		h, port, _ := splitHostPort(host)
		if err := g.inj.checkHost(h, port, r.Method); err != nil {
			return r, denial(r, g.refusedEvent(err))
		}
		if e := g.decide(r.Method, host); e != nil {
			return r, denial(r, e)
		}
		if err := g.inj.prepare(r, h, port, false); err != nil {
			return r, denial(r, g.refusedEvent(err))
		}
		return r.WithContext(context.WithValue(r.Context(), methodKey{}, r.Method)), nil
	})
	// A dial the policy allowed but could not make (refused address, no route) answers 502
	// with its reason, for CONNECT and for plain requests alike.
	p.ConnectionErrHandler = func(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
		_ = badGateway(ctx.Req, err).Write(w)
	}
	p.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if in, ok := ctx.UserData.(interception); ok && resp != nil {
			if err := g.inj.scrub(resp, in.host, in.port); err != nil {
				resp.Body.Close()
				return badGateway(ctx.Req, err)
			}
		}
		if resp == nil && ctx.Error != nil {
			var l *LaunderingError
			if errors.As(ctx.Error, &l) && l.event != nil {
				return denial(ctx.Req, l.event)
			}
			return badGateway(ctx.Req, ctx.Error)
		}
		return resp
	})
	// Every connection is counted, and every request the parser refuses before the proxy sees
	// it (malformed, headers too large, too slow): no attempt goes unaccounted, even one that
	// never named a destination.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&g.handled, 1)
		p.ServeHTTP(w, r)
	})
	g.server = &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				atomic.AddInt64(&g.connections, 1)
			case http.StateActive:
				atomic.AddInt64(&g.requests, 1)
			}
		}}
}

type methodKey struct{}

// interceptKey marks a request read inside an intercepted connection, for its dial's record.
type interceptKey struct{}

// interception is the host and port a CONNECT named, for the requests read inside it.
type interception struct {
	host string
	port int
}

// intercepted handles a request read inside an intercepted connection: it goes to the host
// the CONNECT named, whatever its own Host says, and only over TLS; its secrets are swapped in.
func (g *Gateway) intercepted(r *http.Request, in interception) (*http.Request, *http.Response) {
	hostport := net.JoinHostPort(in.host, strconv.Itoa(in.port))
	if r.URL.Scheme != "https" {
		e := &Event{Time: time.Now(), Method: r.Method, Host: in.host, Port: in.port, Verdict: Denied, Rule: "secret injection", Source: "secret injection",
			Reason: "a connection to " + hostport + ", where a secret is injected, must be TLS (https://)"}
		g.record(e)
		return r, denial(r, e)
	}
	r.URL.Host, r.Host = hostport, hostport
	if in.port == 443 {
		r.Host = in.host
	}
	if err := g.inj.prepare(r, in.host, in.port, true); err != nil {
		return r, denial(r, g.refusedEvent(err))
	}
	// An unencoded response, so that scrub can read it: the transport asks for gzip itself
	// and decodes it.
	r.Header.Del("Accept-Encoding")
	ctx := context.WithValue(context.WithValue(r.Context(), methodKey{}, r.Method), interceptKey{}, true)
	return r.WithContext(ctx), nil
}

// refusedEvent is the event of a request prepare refused (recorded there).
func (g *Gateway) refusedEvent(err error) *Event {
	var l *LaunderingError
	if errors.As(err, &l) && l.event != nil {
		return l.event
	}
	return &Event{Verdict: Denied, Reason: err.Error()}
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// denial is the 403 a client sees, with the reason in its body and a header.
func denial(r *http.Request, e *Event) *http.Response {
	body := "sourceosctl egress gateway: " + e.Reason + "\n"
	resp := goproxy.NewResponse(r, goproxy.ContentTypeText, http.StatusForbidden, body)
	resp.Header.Set("X-Sourceos-Egress", "denied")
	return resp
}

// badGateway is the 502 of a destination the policy allowed but that could not be reached,
// or only at a refused address.
func badGateway(r *http.Request, err error) *http.Response {
	resp := denial(r, &Event{Reason: err.Error()})
	resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
	resp.Header.Set("X-Sourceos-Egress", "failed")
	return resp
}

// refuse records a request refused before the policy was asked, and returns its event.
func (g *Gateway) refuse(method, hostport, reason string) *Event {
	host, port, _ := splitHostPort(hostport)
	e := &Event{Time: time.Now(), Method: method, Host: host, Port: port, Verdict: Denied, Reason: reason}
	g.record(e)
	return e
}

// decide records and returns a denial for host:port, or nil when the policy allows it (the
// dial records the rest).
func (g *Gateway) decide(method, hostport string) *Event {
	host, port, err := splitHostPort(hostport)
	e := &Event{Time: time.Now(), Method: method, Host: host, Port: port, Verdict: Denied}
	if err != nil {
		e.Reason = err.Error()
		g.record(e)
		return e
	}
	v := g.Policy.Decide(host, port)
	if v.Allowed {
		return nil
	}
	e.Rule, e.Source, e.Reason = v.Rule, v.Source, v.Reason
	g.record(e)
	return e
}

func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", hostport)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", hostport)
	}
	return host, port, nil
}

func (g *Gateway) dialPlain(ctx context.Context, _, addr string) (net.Conn, error) {
	method, _ := ctx.Value(methodKey{}).(string)
	if method == "" {
		method = "GET"
	}
	return g.dial(ctx, method, addr)
}

// dial decides again (the one place every connection passes), resolves the name itself,
// checks each address and dials only an address it checked. Every outcome is recorded.
func (g *Gateway) dial(ctx context.Context, method, hostport string) (net.Conn, error) {
	host, port, err := splitHostPort(hostport)
	e := &Event{Time: time.Now(), Method: method, Host: host, Port: port}
	e.Intercepted, _ = ctx.Value(interceptKey{}).(bool)
	if err != nil {
		e.Verdict, e.Reason = Denied, err.Error()
		g.record(e)
		return nil, errors.New(e.Reason)
	}
	v := g.Policy.Decide(host, port)
	e.Rule, e.Source = v.Rule, v.Source
	if !v.Allowed {
		e.Verdict, e.Reason = Denied, v.Reason
		g.record(e)
		return nil, errors.New(e.Reason)
	}
	addrs, err := g.lookup(ctx, host)
	if err != nil {
		e.Verdict, e.Reason = Failed, fmt.Sprintf("resolve %s: %v", host, err)
		g.record(e)
		return nil, errors.New(e.Reason)
	}
	var refused []string
	var lastErr error
	timeout := g.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	for _, a := range addrs {
		if err := g.Policy.CheckAddress(a, port, g.Own); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		target := net.JoinHostPort(a.String(), strconv.Itoa(port))
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			lastErr = err
			continue
		}
		e.Verdict, e.Address = Allowed, a.String()
		dest := g.record(e)
		g.open.Add(1)
		cc := &countedConn{Conn: c, e: e, g: g, start: time.Now(), dest: dest}
		g.mu.Lock()
		if g.live == nil {
			g.live = map[*countedConn]bool{}
		}
		g.live[cc] = true
		g.mu.Unlock()
		return cc, nil
	}
	if len(refused) > 0 && lastErr == nil {
		e.Verdict, e.Reason = Denied, fmt.Sprintf("%s resolves only to refused addresses: %s", host, refused[0])
		e.Address = addrs[0].String()
		g.record(e)
		return nil, errors.New(e.Reason)
	}
	e.Verdict, e.Reason = Failed, fmt.Sprintf("dial %s: %v", host, lastErr)
	g.record(e)
	return nil, errors.New(e.Reason)
}

func (g *Gateway) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if g.Resolve != nil {
		return g.Resolve(ctx, host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("no addresses")
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap() // the resolver may give IPv4 as ::ffff:a.b.c.d
	}
	return addrs, err
}

// countedConn counts bytes each way and records the duration when closed.
type countedConn struct {
	net.Conn
	e     *Event
	g     *Gateway
	start time.Time
	once  sync.Once
	dest  int // the summary's destination its bytes go to (-1: Other)
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	atomic.AddInt64(&c.e.BytesIn, int64(n))
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	atomic.AddInt64(&c.e.BytesOut, int64(n))
	return n, err
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.g.mu.Lock()
		c.e.Duration = time.Since(c.start)
		delete(c.g.live, c)
		c.g.addBytes(c.dest, c.e)
		c.g.mu.Unlock()
		c.g.open.Done()
	})
	return err
}

// CloseWrite half-closes the destination side when the client finishes sending, as a
// tunnel relays it.
func (c *countedConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

// CloseRead is the other half.
func (c *countedConn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return nil
}
