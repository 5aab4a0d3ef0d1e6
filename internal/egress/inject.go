package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Injection is a secret the gateway puts into requests to its hosts, and only theirs: the
// container holds a placeholder of the same length, which the gateway swaps for the value in
// the requests it intercepts for those hosts (over TLS, with the session's CA). A placeholder
// seen on its way anywhere else is refused.
type Injection struct {
	Name string `json:"name"`
	// Hosts are "host" (port 443) or "host:port", names or addresses, matched exactly.
	Hosts []string `json:"hosts"`
	// Header, when set, is set on every request to the hosts: the value, after Scheme
	// ("Bearer", or "Basic" with User as the user name). Without it, the placeholder is
	// replaced wherever the tool put it (headers, URL, body).
	Header string `json:"header,omitempty"`
	Scheme string `json:"scheme,omitempty"`
	User   string `json:"user,omitempty"`

	// Placeholder and Value are known once the session starts; Value never leaves the
	// gateway's memory except towards Hosts.
	Placeholder string `json:"-"`
	Value       string `json:"-"`
}

// CheckInjection checks what a profile says about an injection, before any value exists.
func CheckInjection(in Injection) error {
	if len(in.Hosts) == 0 {
		return errors.New("names no hosts; list the hosts the secret is sent to, e.g. hosts: [api.anthropic.com]")
	}
	for _, h := range in.Hosts {
		if _, _, err := injectHost(h); err != nil {
			return err
		}
	}
	switch strings.ToLower(in.Scheme) {
	case "", "bearer":
		if in.User != "" {
			return errors.New("user is for scheme Basic only")
		}
	case "basic":
	default:
		return fmt.Errorf("scheme %q: use Bearer, Basic, or leave it out (the value as is)", in.Scheme)
	}
	if in.Scheme != "" && in.Header == "" {
		return errors.New("scheme needs header (the header the value is set in, e.g. Authorization)")
	}
	if in.Header != "" && !validHeaderName(in.Header) {
		return fmt.Errorf("header %q is not a header name", in.Header)
	}
	return nil
}

func validHeaderName(s string) bool {
	for _, c := range s {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return s != ""
}

// SplitInjectHost reads an injection's host: a name or address, and a port (443 by default).
func SplitInjectHost(h string) (string, int, error) { return injectHost(h) }

func injectHost(h string) (string, int, error) {
	host, port := h, 443
	if hh, p, err := net.SplitHostPort(h); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("host %q: bad port", h)
		}
		host, port = hh, n
	}
	if host == "" || strings.ContainsAny(host, "*/ ") {
		return "", 0, fmt.Errorf("host %q: name one host exactly (host or host:port); a secret is never sent to a pattern", h)
	}
	return strings.ToLower(host), port, nil
}

// MinPlaceholderRandom is the fewest random characters a placeholder has: a value too short
// for that cannot be told apart from ordinary text, and is refused.
const MinPlaceholderRandom = 16

// Placeholder makes a stand-in for value: the same length and prefix (what a tool may check
// locally, such as "sk-ant-api03-" or "ghp_"), the rest random letters and digits.
func Placeholder(value string) (string, error) {
	prefix := ""
	for i := 0; i < len(value) && i < 16; i++ {
		if value[i] == '-' || value[i] == '_' {
			prefix = value[:i+1]
		}
	}
	n := len(value) - len(prefix)
	if n < MinPlaceholderRandom {
		return "", fmt.Errorf("the value is too short to inject (%d characters): a placeholder needs %d random ones", len(value), MinPlaceholderRandom)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b), nil
}

// CA is a session's certificate authority: its key stays in this process's memory; its
// certificate is what the container trusts.
type CA struct {
	cert  tls.Certificate
	pem   []byte
	store certStore
}

// CALifetime is how long a session CA is valid: longer than any session runs.
const CALifetime = 7 * 24 * time.Hour

// NewCA makes a CA valid from now for lifetime (and an hour before, for clocks behind).
func NewCA(lifetime time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sourceosctl session egress CA", Organization: []string{"sourceosctl"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM is the CA's certificate (never its key), for the container to trust.
func (c *CA) CertPEM() []byte { return c.pem }

// certStore keeps one certificate per intercepted host for the session.
type certStore struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func (s *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.certs[host]; ok {
		return c, nil
	}
	c, err := gen()
	if err != nil {
		return nil, err
	}
	if s.certs == nil {
		s.certs = map[string]*tls.Certificate{}
	}
	s.certs[host] = c
	return c, nil
}

// Injected counts a secret's injections into requests to one host.
type Injected struct {
	Name  string `json:"name"`
	Host  string `json:"host"`
	Count int    `json:"count"`
}

// injector applies a session's injections to the requests the gateway can read.
type injector struct {
	list []Injection
	// refused records a request refused for carrying a placeholder.
	refused func(l *LaunderingError, method string)

	mu     sync.Mutex
	counts map[[2]string]int
}

// interceptFor reports whether connections to host:port are intercepted: some secret is
// injected there.
func (in *injector) interceptFor(host string, port int) bool {
	return len(in.forHost(host, port)) > 0
}

func (in *injector) forHost(host string, port int) []int {
	var out []int
	host = strings.ToLower(host)
	for i, s := range in.list {
		for _, h := range s.Hosts {
			if hh, p, err := injectHost(h); err == nil && hh == host && p == port {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// LaunderingError is a placeholder on its way to a host its secret is not injected for.
type LaunderingError struct {
	Secret, Host string
	Port         int
	Where        string // header NAME, the URL, the body
	// Plain is a request to one of the secret's hosts, not over TLS.
	Plain bool

	event *Event // its record
}

func (e *LaunderingError) Error() string {
	to := net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
	if e.Plain {
		return fmt.Sprintf("the %s carries the placeholder of secret %s, which is injected for %s only over TLS (https://), never in plain text", e.Where, e.Secret, to)
	}
	return fmt.Sprintf("the %s carries the placeholder of secret %s, which is injected only for its own hosts, not %s", e.Where, e.Secret, to)
}

// launder records and returns the refusal of a placeholder of secret i on its way to host.
func (in *injector) launder(i int, host string, port int, where, method string) error {
	l := &LaunderingError{Secret: in.list[i].Name, Host: host, Port: port, Where: where}
	for _, j := range in.forHost(host, port) {
		l.Plain = l.Plain || in.list[j].Name == in.list[i].Name
	}
	if in.refused != nil {
		in.refused(l, method)
	}
	return l
}

// prepare swaps placeholders in a request to host:port: for the secrets injected there (when
// the request was intercepted, over TLS), each placeholder becomes its value and each header
// is set; any other placeholder refuses the request. The body is swapped as it streams.
func (in *injector) prepare(r *http.Request, host string, port int, intercepted bool) error {
	if len(in.list) == 0 {
		return nil
	}
	// A secret with several entries (a header for one host, another for the next) is
	// injected here when any of its entries names this host; headers come from those entries.
	mine, headers := map[int]bool{}, map[int]bool{}
	if intercepted {
		for _, i := range in.forHost(host, port) {
			headers[i] = true
			for j := range in.list {
				mine[j] = mine[j] || in.list[j].Name == in.list[i].Name
			}
		}
	}
	used := map[int]bool{}
	swap := func(s, where string) (string, error) {
		for i, sec := range in.list {
			if sec.Placeholder == "" || !strings.Contains(s, sec.Placeholder) {
				continue
			}
			if !mine[i] {
				return "", in.launder(i, host, port, where, r.Method)
			}
			s = strings.ReplaceAll(s, sec.Placeholder, sec.Value)
			used[i] = true
		}
		return s, nil
	}
	for name, values := range r.Header {
		for j, v := range values {
			nv, err := swap(v, "header "+name)
			if err != nil {
				return err
			}
			values[j] = nv
		}
	}
	for _, u := range []*string{&r.URL.Path, &r.URL.RawPath, &r.URL.RawQuery} {
		nv, err := swap(*u, "URL")
		if err != nil {
			return err
		}
		*u = nv
	}
	for i := range headers {
		sec := in.list[i]
		if sec.Header == "" {
			continue
		}
		v := sec.Value
		switch strings.ToLower(sec.Scheme) {
		case "bearer":
			v = "Bearer " + v
		case "basic":
			v = "Basic " + base64.StdEncoding.EncodeToString([]byte(sec.User+":"+v))
		}
		r.Header.Set(sec.Header, v)
		used[i] = true
	}
	if r.Body != nil && r.Body != http.NoBody {
		// A body up to maxBufferedBody is read whole and decided before anything is sent; a
		// longer one is swapped as it streams, and aborted at a placeholder not its own.
		head, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
		if err != nil {
			return err
		}
		b := &swapBody{ReadCloser: r.Body, in: in, mine: mine, host: host, port: port, used: used, method: r.Method, buf: head}
		if len(head) <= maxBufferedBody {
			b.eof = true
			if err := b.scan(); err != nil {
				return err
			}
		}
		r.Body = b
	}
	in.count(used, host, port)
	return nil
}

func (in *injector) count(used map[int]bool, host string, port int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.counts == nil {
		in.counts = map[[2]string]int{}
	}
	names := map[string]bool{} // one count per secret and request, however many entries applied
	for i := range used {
		names[in.list[i].Name] = true
	}
	for n := range names {
		in.counts[[2]string{n, net.JoinHostPort(host, strconv.Itoa(port))}]++
	}
}

// Injected returns how many requests each secret was put into, per host.
func (in *injector) injected() []Injected {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []Injected
	for k, n := range in.counts {
		out = append(out, Injected{Name: k[0], Host: k[1], Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// maxBufferedBody is the longest request body decided whole, before it is sent.
const maxBufferedBody = 4 << 20

// swapBody swaps placeholders in a body as it streams: a placeholder split across reads is
// found because the last len-1 bytes are held back until more arrive. Placeholders and values
// have the same length, so the body's length does not change. A placeholder of a secret not
// injected here ends the body with a LaunderingError: the request is aborted.
type swapBody struct {
	io.ReadCloser
	in         *injector
	mine, used map[int]bool
	host       string
	port       int
	method     string

	buf     []byte // read, not yet handed out
	pending []byte // swapped, ready to hand out
	eof     bool
	err     error
}

func (b *swapBody) hold() int {
	n := 0
	for _, s := range b.in.list {
		n = max(n, len(s.Placeholder)-1)
	}
	return n
}

func (b *swapBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.eof {
			if len(b.buf) == 0 {
				return 0, io.EOF
			}
			b.pending, b.buf = b.buf, nil // scanned already
			break
		}
		chunk := make([]byte, 32<<10)
		n, err := b.ReadCloser.Read(chunk)
		b.buf = append(b.buf, chunk[:n]...)
		if err == io.EOF {
			b.eof = true
		} else if err != nil {
			b.err = err
		}
		if err := b.scan(); err != nil {
			b.err = err
			return 0, err
		}
		keep := b.hold()
		if b.eof || b.err != nil {
			keep = 0
		}
		if cut := len(b.buf) - keep; cut > 0 {
			b.pending = append(b.pending, b.buf[:cut]...)
			b.buf = append([]byte(nil), b.buf[cut:]...)
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// scan swaps or refuses every whole placeholder in the held bytes.
func (b *swapBody) scan() error {
	for i, s := range b.in.list {
		ph := []byte(s.Placeholder)
		if len(ph) == 0 {
			continue
		}
		for {
			at := indexBytes(b.buf, ph)
			if at < 0 {
				break
			}
			if !b.mine[i] {
				return b.in.launder(i, b.host, b.port, "body", b.method)
			}
			copy(b.buf[at:], s.Value)
			if !b.used[i] {
				b.used[i] = true
				b.in.count(map[int]bool{i: true}, b.host, b.port)
			}
		}
	}
	return nil
}

func indexBytes(s, sep []byte) int {
	return strings.Index(string(s), string(sep))
}

// scrub hides, in a response from an intercepted host, the values of the secrets injected
// there: a host that echoes a request (an error quoting its headers) must not hand the value
// to the container. Each value becomes its placeholder, in headers and in the body as it
// streams (the request asked for an unencoded body, so the text can be read).
func (in *injector) scrub(resp *http.Response, host string, port int) {
	var pairs [][2]string
	seen := map[string]bool{}
	for _, i := range in.forHost(host, port) {
		s := in.list[i]
		if !seen[s.Name] && s.Value != "" {
			seen[s.Name] = true
			pairs = append(pairs, [2]string{s.Value, s.Placeholder})
		}
	}
	if len(pairs) == 0 {
		return
	}
	for _, values := range resp.Header {
		for j := range values {
			for _, p := range pairs {
				values[j] = strings.ReplaceAll(values[j], p[0], p[1])
			}
		}
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &scrubBody{ReadCloser: resp.Body, pairs: pairs}
	}
}

// scrubBody replaces each value with its placeholder (the same length) as the body streams,
// holding back the last len-1 bytes until more arrive so that a value split across reads is
// found.
type scrubBody struct {
	io.ReadCloser
	pairs   [][2]string
	buf     []byte
	pending []byte
	eof     bool
	err     error
}

func (b *scrubBody) Read(p []byte) (int, error) {
	hold := 0
	for _, pr := range b.pairs {
		hold = max(hold, len(pr[0])-1)
	}
	for len(b.pending) == 0 {
		if b.eof || b.err != nil {
			if len(b.buf) > 0 {
				b.pending, b.buf = b.buf, nil
				break
			}
			if b.err != nil {
				return 0, b.err
			}
			return 0, io.EOF
		}
		chunk := make([]byte, 32<<10)
		n, err := b.ReadCloser.Read(chunk)
		b.buf = append(b.buf, chunk[:n]...)
		if err == io.EOF {
			b.eof = true
		} else if err != nil {
			b.err = err
		}
		for _, pr := range b.pairs {
			for at := strings.Index(string(b.buf), pr[0]); at >= 0; at = strings.Index(string(b.buf), pr[0]) {
				copy(b.buf[at:], pr[1])
			}
		}
		keep := hold
		if b.eof || b.err != nil {
			keep = 0
		}
		if cut := len(b.buf) - keep; cut > 0 {
			b.pending = append(b.pending, b.buf[:cut]...)
			b.buf = append([]byte(nil), b.buf[cut:]...)
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}
