package egress

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is what an upstream server received.
type seen struct {
	mu   sync.Mutex
	reqs []string // header lines and body of each request
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.RequestURI())
	_ = r.Header.Write(&b)
	b.Write(body)
	s.mu.Lock()
	s.reqs = append(s.reqs, b.String())
	s.mu.Unlock()
	fmt.Fprint(w, "upstream answered")
}

func (s *seen) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.reqs, "\n----\n")
}

// injectionRig is a gateway with injected secrets between a client that trusts only the
// session's CA and two TLS servers: one a secret is injected for, one it is not.
type injectionRig struct {
	g                *Gateway
	client           *http.Client // trusts the session CA and nothing else
	sock             string
	injected, other  *httptest.Server
	plainHost        string // a plain HTTP server, allowed; it records into seenOut
	seenIn, seenOut  *seen
	injHost, outHost string
}

func newInjectionRig(t *testing.T, inject []Injection) *injectionRig {
	t.Helper()
	r := &injectionRig{seenIn: &seen{}, seenOut: &seen{}}
	r.injected = httptest.NewTLSServer(r.seenIn)
	r.other = httptest.NewTLSServer(r.seenOut)
	t.Cleanup(r.injected.Close)
	t.Cleanup(r.other.Close)
	plain := httptest.NewServer(r.seenOut)
	t.Cleanup(plain.Close)
	r.plainHost = strings.TrimPrefix(plain.URL, "http://")
	r.injHost = strings.TrimPrefix(r.injected.URL, "https://")
	r.outHost = strings.TrimPrefix(r.other.URL, "https://")
	for i := range inject {
		for j, h := range inject[i].Hosts {
			inject[i].Hosts[j] = strings.ReplaceAll(h, "INJECTED", r.injHost)
		}
	}
	ca, err := NewCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(r.injected.Certificate())
	roots.AddCert(r.other.Certificate())
	pol := Policy{Allow: []Rule{mustRule(t, r.injHost), mustRule(t, r.outHost), mustRule(t, r.plainHost)}}
	r.g = &Gateway{Policy: pol, Inject: inject, CA: ca, UpstreamRoots: roots}
	r.sock = filepath.Join(t.TempDir(), "egress.sock")
	l, err := net.Listen("unix", r.sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.g.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.CertPEM())
	r.client = r.clientTrusting(trust)
	return r
}

func (r *injectionRig) clientTrusting(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", r.sock)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DisableKeepAlives: true,
	}}
}

func mustRule(t *testing.T, s string) Rule {
	t.Helper()
	r, err := ParseRule(s, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPlaceholderKeepsShapeAndRefusesShortValues(t *testing.T) {
	for _, v := range []string{"sk-ant-api03-" + strings.Repeat("x", 90), "ghp_" + strings.Repeat("Z", 36), strings.Repeat("k", 40)} {
		p, err := Placeholder(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		q, _ := Placeholder(v)
		prefix := v[:strings.LastIndexAny(v[:min(len(v), 16)], "-_")+1]
		if len(p) != len(v) || !strings.HasPrefix(p, prefix) || p == v || p == q || strings.Contains(p[len(prefix):], "x") && strings.Count(p, "x") > 10 {
			t.Errorf("placeholder of %q = %q (second %q): want the same length and prefix %q, random and unique", v, p, q, prefix)
		}
	}
	if _, err := Placeholder("short-123"); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("a short value: %v", err)
	}
}

func TestInjectionSwapsOnlyForItsHostsAndRefusesLaundering(t *testing.T) {
	const value = "sk-real-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	ph, err := Placeholder(value)
	if err != nil {
		t.Fatal(err)
	}
	const token = "ghp_REALTOKEN0123456789abcdefghijklmnop"
	tph, _ := Placeholder(token)
	r := newInjectionRig(t, []Injection{
		{Name: "api", Hosts: []string{"INJECTED"}, Placeholder: ph, Value: value},
		{Name: "gh", Hosts: []string{"127.0.0.1:1"}, Header: "Authorization", Scheme: "Basic", User: "x-access-token", Placeholder: tph, Value: token},
	})

	// To the injected host: the placeholder in any header arrives as the value (with a body
	// that carries none).
	req, _ := http.NewRequest("POST", "https://"+r.injHost+"/v1/messages?k=1", strings.NewReader(`{"key":"none"}`))
	req.Header.Set("X-Api-Key", ph)
	req.Header.Add("X-Other", "prefix "+ph)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got := r.seenIn.all()
	for _, w := range []string{"X-Api-Key: " + value, "X-Other: prefix " + value, `{"key":"none"}`} {
		if !strings.Contains(got, w) {
			t.Errorf("the injected host did not receive %q; it received:\n%s", w, got)
		}
	}
	if strings.Contains(got, ph) || strings.Contains(got, tph) {
		t.Errorf("a placeholder reached the injected host:\n%s", got)
	}

	// To the other allowed host: the placeholder anywhere is refused, recorded with the
	// secret's name, and nothing arrives.
	for _, tc := range []struct {
		name, where string
		make        func() *http.Request
	}{
		{"header over plain http", "header X-Api-Key", func() *http.Request {
			q, _ := http.NewRequest("GET", "http://"+r.plainHost+"/", nil)
			q.Header.Set("X-Api-Key", ph)
			return q
		}},
		{"URL over plain http", "URL", func() *http.Request { q, _ := http.NewRequest("GET", "http://"+r.plainHost+"/?k="+ph, nil); return q }},
		{"body over plain http", "body", func() *http.Request {
			q, _ := http.NewRequest("POST", "http://"+r.plainHost+"/", bytes.NewReader([]byte(strings.Repeat("a", 50000)+ph)))
			return q
		}},
		{"a body too long to hold", "body", func() *http.Request {
			q, _ := http.NewRequest("POST", "http://"+r.plainHost+"/", bytes.NewReader([]byte(strings.Repeat("a", maxBufferedBody+10)+ph)))
			return q
		}},
		{"its own host in plain text", "only over TLS", func() *http.Request {
			q, _ := http.NewRequest("GET", "http://"+r.injHost+"/", nil)
			q.Header.Set("X-Api-Key", ph)
			return q
		}},
		{"its own host, in the query", "put only into request headers", func() *http.Request {
			q, _ := http.NewRequest("GET", "https://"+r.injHost+"/?k="+ph, nil)
			return q
		}},
		{"its own host, percent-encoded in the query", "put only into request headers", func() *http.Request {
			q, _ := http.NewRequest("GET", "https://"+r.injHost+"/?k="+url.QueryEscape(ph[:5])+"%"+fmt.Sprintf("%02X", ph[5])+ph[6:], nil)
			return q
		}},
		{"its own host, in the body (split across reads)", "put only into request headers", func() *http.Request {
			body := io.MultiReader(strings.NewReader(`{"key":"`+ph[:7]), strings.NewReader(ph[7:]+`"}`))
			q, _ := http.NewRequest("POST", "https://"+r.injHost+"/gists", io.NopCloser(body))
			q.ContentLength = int64(len(`{"key":""}`) + len(ph))
			return q
		}},
		{"its own host, in a body too long to hold", "put only into request headers", func() *http.Request {
			q, _ := http.NewRequest("POST", "https://"+r.injHost+"/gists", bytes.NewReader([]byte(strings.Repeat("a", maxBufferedBody+10)+ph)))
			return q
		}},
		{"gh's placeholder to the api's intercepted host", "placeholder of secret gh", func() *http.Request {
			q, _ := http.NewRequest("GET", "https://"+r.injHost+"/x", nil)
			q.Header.Set("X-Other", tph)
			return q
		}},
	} {
		before := len(r.g.Events())
		inBefore, outBefore := r.seenIn.all(), r.seenOut.all()
		resp, err := r.client.Do(tc.make())
		// A body too long to hold, on an intercepted connection, is refused mid-stream: the
		// connection is closed (the record below says why); every other refusal is a 403.
		streamed := strings.Contains(tc.name, "too long") && strings.HasPrefix(tc.name, "its own host")
		switch {
		case err != nil && !streamed:
			t.Errorf("%s: %v", tc.name, err)
			continue
		case err == nil:
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(msg), tc.where) || resp.Header.Get("X-Sourceos-Egress") != "denied" {
				t.Errorf("%s: %d %q; want 403 naming %q", tc.name, resp.StatusCode, msg, tc.where)
			}
		}
		var rec *Event
		for _, e := range r.g.Events()[before:] {
			if e.Verdict == Denied && strings.HasPrefix(e.Rule, "secret ") {
				rec = &e
			}
		}
		if rec == nil || !strings.Contains(rec.Reason, "placeholder of secret") {
			t.Errorf("%s: no record of the refusal: %+v", tc.name, r.g.Events()[before:])
		}
		// A body too long to hold is refused as it streams: what came before the placeholder
		// may have been sent (the request is then aborted); a placeholder never is.
		time.Sleep(50 * time.Millisecond) // let the server record what it got
		if !strings.Contains(tc.name, "too long") && (r.seenIn.all() != inBefore || r.seenOut.all() != outBefore) {
			t.Errorf("%s: a refused request reached a server", tc.name)
		}
		if strings.Count(r.seenIn.all()+r.seenOut.all(), value) != strings.Count(inBefore+outBefore, value) {
			t.Errorf("%s: the value reached a server in a refused request", tc.name)
		}
		if strings.Contains(r.seenIn.all()+r.seenOut.all(), ph) || strings.Contains(r.seenIn.all()+r.seenOut.all(), tph) {
			t.Errorf("%s: a placeholder reached a server", tc.name)
		}
		if strings.Contains(fmt.Sprint(r.g.Events()), value) || strings.Contains(fmt.Sprint(r.g.Events()), token) {
			t.Errorf("%s: a secret's value is in the records", tc.name)
		}
	}
	// The other host is a tunnel (not intercepted): a client trusting only the session CA
	// cannot reach it, one that pins the server's own certificate can.
	if _, err := r.client.Get("https://" + r.outHost + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the non-injected host was intercepted: a client trusting only the session CA got %v", err)
	}
	pinned := x509.NewCertPool()
	pinned.AddCert(r.other.Certificate())
	resp, err = r.clientTrusting(pinned).Get("https://" + r.outHost + "/tunnel")
	if err != nil {
		t.Fatalf("the non-injected host with its own certificate pinned: %v", err)
	}
	resp.Body.Close()
	if n := r.g.Summary().Injected; len(n) != 1 || n[0].Name != "api" || n[0].Count != 1 || n[0].Host != r.injHost {
		t.Errorf("injected counts = %+v", n)
	}
}

func TestHeaderInjectionSetsTheHeaderWhateverTheClientSent(t *testing.T) {
	const token = "ghp_REALTOKEN0123456789abcdefghijklmnop"
	tph, _ := Placeholder(token)
	r := newInjectionRig(t, []Injection{
		{Name: "gh", Hosts: []string{"127.0.0.1:1"}, Header: "Authorization", Scheme: "Basic", User: "x-access-token", Placeholder: tph, Value: token},
		{Name: "gh", Hosts: []string{"INJECTED"}, Header: "Authorization", Scheme: "Bearer", Placeholder: tph, Value: token},
	})
	for _, sent := range []string{"token " + tph, ""} {
		req, _ := http.NewRequest("GET", "https://"+r.injHost+"/user", nil)
		if sent != "" {
			req.Header.Set("Authorization", sent)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := r.seenIn.all()
	// The secret's first entry names another host: this one's entry sets the header, and
	// the placeholder the client sent is swapped rather than refused.
	if strings.Count(got, "Authorization: Bearer "+token) != 2 || strings.Contains(got, tph) || strings.Contains(got, "Basic") {
		t.Errorf("the host received:\n%s", got)
	}
	// A request inside the intercepted connection that names another Host still goes to
	// the host the CONNECT named.
	req, _ := http.NewRequest("GET", "https://"+r.injHost+"/elsewhere", nil)
	req.Host = r.outHost
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(r.seenIn.all(), "GET /elsewhere") || strings.Contains(r.seenOut.all(), "/elsewhere") {
		t.Errorf("a Host header moved an intercepted request: in %q, out %q", r.seenIn.all(), r.seenOut.all())
	}
	for _, e := range r.g.Events() {
		if e.Host == strings.Split(r.injHost, ":")[0] && e.Verdict == Allowed && !e.Intercepted {
			t.Errorf("a connection to the injected host is not marked intercepted: %+v", e)
		}
	}
}

func TestCheckInjection(t *testing.T) {
	for _, tc := range []struct {
		in   Injection
		want string
	}{
		{Injection{}, "names no hosts"},
		{Injection{Hosts: []string{"*.example.com"}}, "never sent to a pattern"},
		{Injection{Hosts: []string{"api.example.com:99999"}}, "bad port"},
		{Injection{Hosts: []string{"a.example"}, Scheme: "Digest", Header: "Authorization"}, "use Bearer, Basic"},
		{Injection{Hosts: []string{"a.example"}, Scheme: "Bearer"}, "scheme needs header"},
		{Injection{Hosts: []string{"a.example"}, Header: "X Api"}, "not a header name"},
		{Injection{Hosts: []string{"a.example"}, Header: "Authorization", Scheme: "Bearer", User: "u"}, "Basic only"},
		{Injection{Hosts: []string{"a.example", "b.example:8443"}, Header: "Authorization", Scheme: "Basic", User: "x"}, ""},
	} {
		err := CheckInjection(tc.in)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.in, err, tc.want)
		}
	}
}

// TestAnEchoingHostCannotHandTheValueBack: a host that echoes the request — headers and body,
// gzipped when the client accepts it — answers the container with the placeholder, never the
// value it received.
func TestAnEchoingHostCannotHandTheValueBack(t *testing.T) {
	const value = "sk-echo-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	ph, _ := Placeholder(value)
	echo := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo", r.Header.Get("X-Api-Key"))
		var out io.Writer = w
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		fmt.Fprintf(out, "%s you sent %s %s", strings.Repeat("padding ", 5000), r.Header.Get("X-Api-Key"), strings.Repeat("z", 100))
	}))
	defer echo.Close()
	host := echo.Listener.Addr().String()
	ca, _ := NewCA(time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(echo.Certificate())
	g := &Gateway{Policy: Policy{Allow: []Rule{mustRule(t, host)}}, CA: ca, UpstreamRoots: roots,
		Inject: []Injection{{Name: "api", Hosts: []string{host}, Placeholder: ph, Value: value}}}
	sock := filepath.Join(t.TempDir(), "g.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	defer func() { _ = g.Shutdown(context.Background()) }()
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.CertPEM())
	for _, gz := range []bool{false, true} {
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			TLSClientConfig: &tls.Config{RootCAs: trust}, DisableCompression: true}
		req, _ := http.NewRequest("GET", "https://"+host+"/", nil)
		req.Header.Set("X-Api-Key", ph)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = resp.Body
		if resp.Header.Get("Content-Encoding") == "gzip" {
			if body, err = gzip.NewReader(resp.Body); err != nil {
				t.Fatal(err)
			}
		}
		b, _ := io.ReadAll(body)
		resp.Body.Close()
		if strings.Contains(string(b)+resp.Header.Get("X-Echo"), value) || !strings.Contains(string(b), "you sent "+ph) || resp.Header.Get("X-Echo") != ph {
			t.Errorf("gzip %v: the echo reached the client as %q …%q", gz, resp.Header.Get("X-Echo"), string(b)[max(0, len(b)-200):])
		}
	}
}

// TestWhatAnInterceptedHostSendsBackIsScrubbed: a host that echoes what it received — in its
// status line, a trailer, a Basic header's encoding — answers the container with placeholders;
// a body in an encoding the gateway did not ask for (and cannot read) is refused.
func TestWhatAnInterceptedHostSendsBackIsScrubbed(t *testing.T) {
	const value = "sk-echo-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	ph, _ := Placeholder(value)
	echo := func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Api-Key") + " " + r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/trailer":
			w.Header().Set("Trailer", "X-Echo")
			w.WriteHeader(200)
			fmt.Fprint(w, "body")
			w.Header().Set("X-Echo", got)
		case "/deflate":
			w.Header().Set("Content-Encoding", "deflate")
			fw, _ := flate.NewWriter(w, 5)
			fmt.Fprint(fw, got)
			fw.Close()
		default:
			fmt.Fprint(w, got)
		}
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" {
			c, buf, _ := w.(http.Hijacker).Hijack()
			fmt.Fprintf(buf, "HTTP/1.1 401 bad key %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", r.Header.Get("X-Api-Key"))
			buf.Flush()
			c.Close()
			return
		}
		echo(w, r)
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	ca, _ := NewCA(time.Hour)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	g := &Gateway{Policy: Policy{Allow: []Rule{mustRule(t, host)}}, CA: ca, UpstreamRoots: roots, Inject: []Injection{
		{Name: "api", Hosts: []string{host}, Header: "X-Api-Key", Placeholder: ph, Value: value},
		{Name: "api", Hosts: []string{host}, Header: "Authorization", Scheme: "Basic", User: "x-access-token", Placeholder: ph, Value: value},
	}}
	sock := filepath.Join(t.TempDir(), "g.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	defer func() { _ = g.Shutdown(context.Background()) }()
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.CertPEM())
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}, TLSClientConfig: &tls.Config{RootCAs: trust}, DisableCompression: true, DisableKeepAlives: true}}
	encoded := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + value))
	for _, path := range []string{"/", "/status", "/trailer", "/deflate"} {
		resp, err := client.Get("https://" + host + path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		all := resp.Status + fmt.Sprint(resp.Header) + string(b) + fmt.Sprint(resp.Trailer)
		if strings.Contains(all, value) || strings.Contains(all, encoded) {
			t.Errorf("%s: the value (or its Basic encoding) reached the client: %s", path, all)
		}
		switch path {
		case "/deflate":
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "content encoding") {
				t.Errorf("an unrequested encoding: %d %s", resp.StatusCode, b)
			}
		case "/":
			if !strings.Contains(string(b), ph+" Basic ") {
				t.Errorf("the echo: %s", b)
			}
		}
	}
}

// TestTrailersAndHostNamesCarryNoPlaceholder: a request trailer is never forwarded where
// secrets are injected (it comes after the request was checked), and a destination whose
// name carries a placeholder — whole or split across labels — is refused before it is
// resolved (resolving would send it out in DNS).
func TestTrailersAndHostNamesCarryNoPlaceholder(t *testing.T) {
	const value = "sk-real-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	ph, _ := Placeholder(value)
	r := newInjectionRig(t, []Injection{{Name: "api", Hosts: []string{"INJECTED"}, Placeholder: ph, Value: value}})
	req, _ := http.NewRequest("POST", "http://"+r.plainHost+"/t", io.NopCloser(strings.NewReader("body")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Key": {ph}}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.Contains(r.seenOut.all(), ph) || !strings.Contains(r.seenOut.all(), "POST /t") {
		t.Errorf("the plain host saw:\n%s", r.seenOut.all())
	}
	lower := strings.ToLower(ph)
	for _, name := range []string{lower + ".example.test", lower[:20] + "." + lower[20:] + ".example.test"} {
		c, err := net.Dial("unix", r.sock)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", name, name)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: %v %v", name, err, resp)
		}
	}
	refused := 0
	for _, e := range r.g.Events() {
		if e.Rule == "secret api" && strings.Contains(e.Reason, "host name carries the placeholder") {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refusals recorded for a placeholder in the host name, want 2: %+v", refused, r.g.Events())
	}
}
