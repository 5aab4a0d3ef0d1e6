package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
)

// benchClients are two clients of the same HTTPS server on loopback: one through a gateway on
// a Unix socket (as a session's container reaches it), one direct. Neither keeps connections
// alive, so each request is a new connection (and a new TLS handshake) on both.
func benchClients(b *testing.B, srv *httptest.Server) (via, direct *http.Client, target string) {
	b.Helper()
	p := srv.Listener.Addr().(*net.TCPAddr).Port
	policy := mustPolicy(b, []string{"allowed.test", "127.0.0.1:" + strconv.Itoa(p)}, nil)
	sock := filepath.Join(b.TempDir(), "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	g := &Gateway{Policy: policy, Resolve: resolve}
	go func() { _ = g.Serve(l) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.InsecureSkipVerify = true // the certificate does not name allowed.test
	via = &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		TLSClientConfig:   tlsConf,
		DisableKeepAlives: true,
	}}
	direct = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf.Clone(), DisableKeepAlives: true}}
	return via, direct, fmt.Sprintf("allowed.test:%d", p)
}

func get(c *http.Client, u string, want int64) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n != want {
		err = fmt.Errorf("%s: %d bytes, want %d", u, n, want)
	}
	return err
}

// BenchmarkGatewayConnection: 100 sequential HTTPS requests, a new connection each, through
// the gateway and direct; the target is ≤ 1 ms of overhead per connection at the median.
func BenchmarkGatewayConnection(b *testing.B) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	via, direct, target := benchClients(b, srv)
	hundred := func(c *http.Client, u string) func() error {
		return func() error {
			for range 100 {
				if err := get(c, u, 2); err != nil {
					return err
				}
			}
			return nil
		}
	}
	r := benchtest.Pairs(b, hundred(via, "https://"+target+"/"), hundred(direct, srv.URL+"/"), "gateway", "direct")
	b.ReportMetric(float64(benchtest.Median(r.Ours)-benchtest.Median(r.Theirs))/100/1e6, "ms-overhead/conn")
}

// BenchmarkGatewayThroughput: a 256 MiB HTTPS download through the gateway's tunnel and
// direct; the target is ≥ 0.9 × direct (a ratio ≤ 1.11 here, where ratio is time).
func BenchmarkGatewayThroughput(b *testing.B) {
	const size = 256 << 20
	chunk := make([]byte, 1<<20)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	defer srv.Close()
	via, direct, target := benchClients(b, srv)
	benchtest.Pairs(b, func() error { return get(via, "https://"+target+"/", size) },
		func() error { return get(direct, srv.URL+"/", size) }, "gateway", "direct")
}

// BenchmarkInjection: 100 sequential API-like requests (a 4 KiB JSON body, the key in a
// header) through the gateway to a host a secret is injected for — intercepted with the
// session CA, the placeholder swapped — and the same requests to a host without injection,
// a tunnel; both clients keep their connection alive, as API clients do. The target is ≤ 2 ms
// of overhead per request at the median.
func BenchmarkInjection(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	injected, tunnel := httptest.NewTLSServer(h), httptest.NewTLSServer(h)
	defer injected.Close()
	defer tunnel.Close()
	const value = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	ph, err := Placeholder(value)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := NewCA(time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	inj, tun := injected.Listener.Addr().String(), tunnel.Listener.Addr().String()
	roots := x509.NewCertPool()
	roots.AddCert(injected.Certificate())
	g := &Gateway{Policy: mustPolicy(b, []string{inj, tun}, nil), CA: ca, UpstreamRoots: roots,
		Inject: []Injection{{Name: "api", Hosts: []string{inj}, Placeholder: ph, Value: value}}}
	sock := filepath.Join(b.TempDir(), "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.CertPEM())
	trust.AddCert(tunnel.Certificate())
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			TLSClientConfig: &tls.Config{RootCAs: trust},
		}}
	}
	body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 4000) + `"}]}`
	hundred := func(c *http.Client, host string) func() error {
		return func() error {
			for range 100 {
				req, _ := http.NewRequest("POST", "https://"+host+"/v1/messages", strings.NewReader(body))
				req.Header.Set("X-Api-Key", ph)
				resp, err := c.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %s", host, resp.Status)
				}
			}
			return nil
		}
	}
	r := benchtest.Pairs(b, hundred(client(), inj), hundred(client(), tun), "injected", "tunnel")
	b.ReportMetric(float64(benchtest.Median(r.Ours)-benchtest.Median(r.Theirs))/100/1e6, "ms-overhead/request")
}
