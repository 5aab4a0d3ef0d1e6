package agentmachine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/evidence"
)

// gatewayShutdown bounds waiting for the gateway's connections to close once the container has
// gone: a connection still open then cannot be accounted for, and fails the session. (A
// variable: tests shorten it.)
var gatewayShutdown = 5 * time.Second

// EgressLog is the artifact holding every connection attempt, one JSON object per line.
const EgressLog = "egress.jsonl"

// GatewayError is the gateway failing during the session: the session is stopped and fails
// (closed, never open).
type GatewayError struct{ Err error }

func (e *GatewayError) Error() string { return "the egress gateway failed: " + e.Err.Error() }
func (e *GatewayError) Unwrap() error { return e.Err }

// sessionGateway is the running gateway of one session: in this process (g), or in a
// sidecar container on the service (sidecar, box).
type sessionGateway struct {
	g       *egress.Gateway
	sidecar *SidecarPlan
	box     *containerRun
	stderr  syncBuffer // what the sidecar says on its standard error
	once    sync.Once
	events  []egress.Event // the itemized attempts
	summary egress.Summary // every attempt, counted
	err     error          // what stopping found: connections it could not account for
}

// gateway starts the session's egress gateway on its socket, before the container exists;
// should it stop on its own while the session runs, the session is stopped and fails.
func (r *sessionRun) gateway(ctx context.Context) (func(), error) {
	e := r.plan.Egress
	if e == nil {
		return nil, nil
	}
	r.denials = &denialLines{w: r.IO.ErrOut}
	if e.Sidecar != nil {
		return r.startSidecar(ctx, e.Sidecar)
	}
	pol, err := r.plan.Decision.Egress.Policy()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(e.Socket)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("egress gateway: %w", err)
	}
	// A directory of its own, new: nothing planted there beforehand is used. Others may pass
	// through it (a root service's container user), never list or change it.
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("egress gateway: %w", err)
	}
	undo := func() { _ = os.RemoveAll(dir) }
	listen := r.listenGateway
	if listen == nil {
		listen = egress.Listen
	}
	l, err := listen(e.Socket, e.SocketUID)
	if err != nil {
		undo()
		return nil, fmt.Errorf("egress gateway: %w", err)
	}
	own := ownAddresses()
	sg := &sessionGateway{g: &egress.Gateway{
		Policy: pol,
		Own:    func(a netip.Addr) bool { return own[a] },
		OnDeny: r.denials.deny,
	}}
	if e.Intercept {
		if err := r.interception(sg.g, dir); err != nil {
			l.Close()
			undo()
			return nil, fmt.Errorf("egress gateway: %w", err)
		}
	}
	r.gw = sg
	go func() {
		err := sg.g.Serve(l) // returns when the session shuts it down, or when it breaks
		if err == nil {
			err = errors.New("it stopped serving")
		}
		r.gatewayEnded(err)
	}()
	r.event("egress gateway listening on %s: %d allow and %d deny rules", e.Socket, len(pol.Allow), len(pol.Deny))
	return func() { r.stopGateway(); undo() }, nil
}

// interception gives the in-process gateway the injected secrets, a session CA and the roots
// it verifies intercepted hosts with, and puts the CA's certificate beside the socket.
func (r *sessionRun) interception(g *egress.Gateway, dir string) error {
	var err error
	if g.Inject, err = egress.WithValues(r.plan.Decision.Egress.Inject, r.injected); err != nil {
		return err
	}
	if g.CA, err = egress.NewCA(egress.CALifetime); err != nil {
		return err
	}
	extra, err := r.extraRoots()
	if err != nil {
		return err
	}
	if g.UpstreamRoots, err = egress.SystemRootsAnd(extra); err != nil {
		return fmt.Errorf("SSL_CERT_FILE %s: %w", r.Getenv("SSL_CERT_FILE"), err)
	}
	return egress.WriteCA(dir, g.CA)
}

// extraRoots are the PEM certificates of the host's SSL_CERT_FILE, when it names one: the
// gateway trusts them for intercepted hosts besides the system's roots (a TLS-inspecting
// proxy's, say).
func (r *sessionRun) extraRoots() ([]byte, error) {
	file := r.Getenv("SSL_CERT_FILE")
	if file == "" {
		return nil, nil
	}
	pem, err := r.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("SSL_CERT_FILE: %w", err)
	}
	return pem, nil
}

// gatewayEnded fails the session because its gateway ended while the session ran — unless
// the session stopped it itself.
func (r *sessionRun) gatewayEnded(err error) {
	select {
	case <-r.stopping:
		return
	default:
	}
	r.event("egress gateway ended during the session: %v", err)
	r.fail(&GatewayError{Err: err})
}

// stopGateway stops the gateway once the container is gone, waits for its records and keeps
// them; it runs once (from collect, and from the clean-up when collect never came).
func (r *sessionRun) stopGateway() {
	sg := r.gw
	if sg == nil {
		return
	}
	sg.once.Do(func() {
		close(r.stopping)
		if sg.sidecar != nil {
			r.stopSidecar(sg)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), gatewayShutdown)
		defer cancel()
		if err := sg.g.Shutdown(ctx); err != nil {
			sg.err = err
		}
		sg.events, sg.summary = sg.g.Events(), sg.g.Summary()
	})
}

// collectEgress stops the gateway and accounts for its connections: a connection it could not
// account for fails the session.
func (r *sessionRun) collectEgress() error {
	if r.gw == nil {
		return nil
	}
	r.stopGateway()
	sg := r.gw
	if sg.sidecar != nil { // its refusals come back with its log
		for _, e := range sg.events {
			if e.Verdict == egress.Denied {
				r.denials.deny(e)
			}
		}
	}
	r.denials.close()
	sum := sg.summary
	r.event("egress gateway stopped: %d connection attempts, %d allowed, %d denied, %d failed (%d itemized)", sum.Attempts, sum.Allowed, sum.Denied, sum.Failed, sum.Itemized)
	if sg.err != nil {
		r.event("egress gateway could not account for every connection: %v", sg.err)
		return &GatewayError{Err: fmt.Errorf("could not account for every connection: %w", sg.err)}
	}
	return nil
}

// ownAddresses are this host's addresses, which the gateway refuses like private ones.
func ownAddresses() map[netip.Addr]bool {
	own := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own[p.Addr().Unmap()] = true
		}
	}
	return own
}

// egressRecord is the evidence's account of the gateway, and its log artifact (the itemized
// attempts, one JSON object per line).
func egressRecord(pl *Plan, ev *EgressEvents) (*evidence.Egress, []byte) {
	d := pl.Decision.Egress
	sum := ev.Summary
	rec := &evidence.Egress{Allow: []evidence.EgressRule{}, Deny: []evidence.EgressRule{}, Log: EgressLog, Destinations: []evidence.EgressDestination{},
		Attempts: sum.Attempts, Allowed: sum.Allowed, Denied: sum.Denied, Failed: sum.Failed, Itemized: len(ev.Events),
		Connections: sum.Connections, Unparsed: sum.Unparsed}
	for _, r := range d.Allow {
		rec.Allow = append(rec.Allow, evidence.EgressRule{Rule: r.Rule, Source: r.Source})
	}
	for _, r := range d.Deny {
		rec.Deny = append(rec.Deny, evidence.EgressRule{Rule: r.Rule, Source: r.Source})
	}
	if ev.Unaccounted != nil {
		rec.Unaccounted = ev.Unaccounted.Error()
	}
	for _, x := range sum.Destinations {
		rec.Destinations = append(rec.Destinations, evidence.EgressDestination(x))
	}
	if o := sum.Other; o != nil {
		other := evidence.EgressDestination(*o)
		rec.OtherDestinations = &other
	}
	// One entry per secret (a secret may have several inject entries), then its counts.
	at := map[string]int{}
	for _, in := range d.Inject {
		i, ok := at[in.Name]
		if !ok {
			i, at[in.Name] = len(rec.Injected), len(rec.Injected)
			rec.Injected = append(rec.Injected, evidence.EgressInjection{Name: in.Name, Hosts: []string{}, PerHost: []evidence.InjectedHost{}})
		}
		rec.Injected[i].Hosts = append(rec.Injected[i].Hosts, in.Hosts...)
	}
	for _, n := range sum.Injected {
		if i, ok := at[n.Name]; ok {
			rec.Injected[i].Requests += n.Count
			rec.Injected[i].PerHost = append(rec.Injected[i].PerHost, evidence.InjectedHost{Host: n.Host, Count: n.Count})
		}
	}
	var log bytes.Buffer
	_ = egress.WriteLog(&log, ev.Events) // a buffer takes every write
	return rec, log.Bytes()
}

// maxDenialLines bounds the denial lines a session prints: one per destination, for the first
// destinations; the rest are counted and said once at the end (all are in the evidence).
const maxDenialLines = 20

// denialLines prints the gateway's refusals on the user's terminal without flooding it.
type denialLines struct {
	w          io.Writer
	mu         sync.Mutex
	seen       map[string]bool
	suppressed int
}

func (d *denialLines) deny(ev egress.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := net.JoinHostPort(ev.Host, fmt.Sprint(ev.Port))
	if d.seen[key] || len(d.seen) >= maxDenialLines {
		d.suppressed++
		return
	}
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	d.seen[key] = true
	fmt.Fprintf(d.w, "! egress: %s\n", ev.Reason)
}

// close says how many refusals were not printed.
func (d *denialLines) close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.suppressed > 0 {
		fmt.Fprintf(d.w, "! egress: %d more refusals not shown (repeats, or beyond the first %d destinations); every one is counted in the evidence\n", d.suppressed, maxDenialLines)
		d.suppressed = 0
	}
}

// ProbeGateway starts a gateway with no allow rule on a socket in a new directory under
// base, asks it through the socket for a destination, and expects its refusal; it stops the
// gateway and removes the directory whatever happens. It is doctor's proof that sessions can
// start their gateway here.
func ProbeGateway(ctx context.Context, base string) error {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(base, "doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "gateway.sock")
	l, err := egress.Listen(sock, -1)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	g := &egress.Gateway{}
	go func() { _ = g.Serve(l) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", sock, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprint(c, "CONNECT doctor.invalid:443 HTTP/1.1\r\nHost: doctor.invalid:443\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("read its answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Sourceos-Egress") != "denied" {
		return fmt.Errorf("it answered %s, not the refusal of a destination no rule allows", resp.Status)
	}
	return nil
}

// syncBuffer keeps the first 64 KiB written to it, safe for one writer and readers: what the
// gateway's sidecar says on its standard error, to say why it failed.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() < 64<<10 {
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
