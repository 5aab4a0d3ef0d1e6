package egress

import (
	"bytes"
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
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Injection is a secret the gateway puts into requests to its hosts, and only theirs: the
// container holds a placeholder of the same length, which the gateway swaps for the value in
// the headers of the requests it intercepts for those hosts (over TLS, with the session's
// CA). A placeholder seen anywhere else is refused.
type Injection struct {
	Name string `json:"name"`
	// Hosts are "host" (port 443) or "host:port", names or addresses, matched exactly.
	Hosts []string `json:"hosts"`
	// Header, when set, is set on every request to the hosts: the value, after Scheme
	// ("Bearer", or "Basic" with User as the user name). Without it, the placeholder is
	// swapped in whichever request header the tool put it. Never the URL or the body.
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
		if _, _, err := SplitInjectHost(h); err != nil {
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
func SplitInjectHost(h string) (string, int, error) {
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
			if hh, p, err := SplitInjectHost(h); err == nil && hh == host && p == port {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// LaunderingError is a placeholder where the gateway will not put its secret: on its way to
// a host the secret is not injected for, or anywhere but a request header.
type LaunderingError struct {
	Secret, Host string
	Port         int
	Where        string // header NAME, the URL, the body, the host name
	// Own: the host is one of the secret's own; Plain: without TLS.
	Own, Plain bool

	event *Event // its record
}

func (e *LaunderingError) Error() string {
	to := net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
	switch {
	case e.Own && e.Plain:
		return fmt.Sprintf("the %s carries the placeholder of secret %s, which is injected for %s only over TLS (https://), never in plain text", e.Where, e.Secret, to)
	case e.Own:
		return fmt.Sprintf("the %s carries the placeholder of secret %s, which is put only into request headers for %s, never the URL or the body (where a host could store or echo it)", e.Where, e.Secret, to)
	}
	return fmt.Sprintf("the %s carries the placeholder of secret %s, which is injected only for its own hosts, not %s", e.Where, e.Secret, to)
}

// launder records and returns the refusal of a placeholder of secret i.
func (in *injector) launder(i int, host string, port int, where, method string, plain bool) error {
	l := &LaunderingError{Secret: in.list[i].Name, Host: host, Port: port, Where: where, Plain: plain}
	for _, j := range in.forHost(host, port) {
		l.Own = l.Own || in.list[j].Name == in.list[i].Name
	}
	if in.refused != nil {
		in.refused(l, method)
	}
	return l
}

// carried returns the first secret whose placeholder s holds, or -1.
func (in *injector) carried(s string) int {
	for i, sec := range in.list {
		if sec.Placeholder != "" && strings.Contains(s, sec.Placeholder) {
			return i
		}
	}
	return -1
}

// checkHost refuses a destination whose name carries a placeholder (split across labels or
// not): resolving it would send the placeholder out in DNS.
func (in *injector) checkHost(host string, port int, method string) error {
	name := strings.ToLower(strings.ReplaceAll(host, ".", "")) // names are case-blind
	for i, sec := range in.list {
		if sec.Placeholder != "" && strings.Contains(name, strings.ToLower(sec.Placeholder)) {
			return in.launder(i, host, port, "host name", method, false)
		}
	}
	return nil
}

// prepare puts secrets into a request to host:port the gateway can read. Only request
// headers ever carry a value, and only on an intercepted (TLS) connection to one of the
// secret's hosts: a header entry sets its header; an entry without one swaps the placeholder
// in whatever header the tool put it. A placeholder anywhere else — another host, the URL,
// the body, a trailer — refuses the request: a host that stores or echoes what it is sent
// (a gist, a model asked to repeat it) must never be handed the value to give back.
func (in *injector) prepare(r *http.Request, host string, port int, intercepted bool) error {
	if len(in.list) == 0 {
		return nil
	}
	// Trailers arrive after a request is checked: never forwarded here. (The request sent on
	// is a copy made after prepare, so trailers the client sends later stay behind.)
	r.Trailer = nil
	// The entries for this host; a secret swaps in headers when one of its entries for this
	// host names no header.
	setters, swaps := []int{}, map[string]bool{}
	if intercepted {
		for _, i := range in.forHost(host, port) {
			if in.list[i].Header != "" {
				setters = append(setters, i)
				r.Header.Del(in.list[i].Header) // whatever the tool put there is replaced
			} else {
				swaps[in.list[i].Name] = true
			}
		}
	}
	used := map[int]bool{}
	for name, values := range r.Header {
		for j, v := range values {
			for i := in.carried(v); i >= 0; i = in.carried(v) {
				sec := in.list[i]
				if !swaps[sec.Name] {
					return in.launder(i, host, port, "header "+name, r.Method, !intercepted)
				}
				v = strings.ReplaceAll(v, sec.Placeholder, sec.Value)
				used[i] = true
			}
			values[j] = v
		}
	}
	query, _ := url.QueryUnescape(r.URL.RawQuery)
	for _, u := range []string{r.URL.Path, r.URL.RawPath, r.URL.RawQuery, query, r.URL.Fragment} {
		if i := in.carried(u); i >= 0 {
			return in.launder(i, host, port, "URL", r.Method, !intercepted)
		}
	}
	for _, i := range setters {
		sec := in.list[i]
		r.Header.Set(sec.Header, headerValue(sec))
		used[i] = true
	}
	if r.Body != nil && r.Body != http.NoBody {
		// A body up to maxBufferedBody is read whole and checked before anything is sent; a
		// longer one is checked as it streams, and aborted at a placeholder.
		head, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
		if err != nil {
			return err
		}
		r.Trailer = nil // reading to the end filled them in again
		check := func(buf []byte) error {
			if i := in.carried(string(buf)); i >= 0 {
				return in.launder(i, host, port, "body", r.Method, !intercepted)
			}
			return nil
		}
		body := &heldReader{ReadCloser: r.Body, hold: in.longestPlaceholder() - 1, fix: check, buf: head}
		if len(head) <= maxBufferedBody { // all of it: checked now, handed out as it is
			if err := check(head); err != nil {
				return err
			}
			body.eof = true
		}
		r.Body = body
	}
	in.count(used, host, port)
	return nil
}

// headerValue is what a header entry sets: the value after its scheme.
func headerValue(sec Injection) string {
	switch strings.ToLower(sec.Scheme) {
	case "bearer":
		return "Bearer " + sec.Value
	case "basic":
		return "Basic " + basic(sec.User, sec.Value)
	}
	return sec.Value
}

func basic(user, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))
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

// maxBufferedBody is the longest request body checked whole, before it is sent.
const maxBufferedBody = 4 << 20

// heldReader hands out a stream after fix has seen it, holding back the last hold bytes until
// more arrive so that a string split across reads is seen whole. fix may change the held bytes
// (keeping their length) or fail, which ends the stream with its error.
type heldReader struct {
	io.ReadCloser
	hold    int
	fix     func(buf []byte) error
	atEOF   func() // once, when the stream has ended
	buf     []byte // read, not yet handed out
	pending []byte // ready to hand out
	eof     bool
	err     error
}

func (b *heldReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.eof || b.err != nil {
			if len(b.buf) > 0 {
				b.pending, b.buf = b.buf, nil
				break
			}
			if b.atEOF != nil {
				b.atEOF()
				b.atEOF = nil
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
		if ferr := b.fix(b.buf); ferr != nil {
			b.err, b.buf = ferr, nil
			return 0, ferr
		}
		keep := b.hold
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

// longestPlaceholder is the length of the session's longest placeholder.
func (in *injector) longestPlaceholder() int {
	n := 0
	for _, s := range in.list {
		n = max(n, len(s.Placeholder))
	}
	return n
}

// ErrEncodedResponse refuses a response from an intercepted host in an encoding the gateway
// did not ask for, and so cannot read for a secret's value.
var ErrEncodedResponse = errors.New("an intercepted host answered in a content encoding the gateway did not ask for, which it cannot check for an injected secret's value")

// scrub hides, in a response from an intercepted host, the values of the secrets injected
// there, in every form the gateway sent them (the value, and Basic's encoding): a host that
// echoes a request (an error quoting its headers) must not hand a value to the container.
// Each becomes its placeholder's form (the same length) in the status line, headers, the
// body as it streams and the trailers at its end. A body in an encoding the gateway cannot
// read is refused.
func (in *injector) scrub(resp *http.Response, host string, port int) error {
	var pairs [][2]string
	for _, i := range in.forHost(host, port) {
		s := in.list[i]
		if s.Value == "" {
			continue
		}
		pairs = append(pairs, [2]string{s.Value, s.Placeholder})
		if strings.EqualFold(s.Scheme, "basic") {
			pairs = append(pairs, [2]string{basic(s.User, s.Value), basic(s.User, s.Placeholder)})
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") && !resp.Uncompressed {
		return ErrEncodedResponse
	}
	hide := func(s string) string {
		for _, p := range pairs {
			s = strings.ReplaceAll(s, p[0], p[1])
		}
		return s
	}
	hideAll := func(h http.Header) {
		for _, values := range h {
			for j := range values {
				values[j] = hide(values[j])
			}
		}
	}
	resp.Status = hide(resp.Status)
	hideAll(resp.Header)
	hideAll(resp.Trailer)
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	hold := 0
	for _, p := range pairs {
		hold = max(hold, len(p[0])-1)
	}
	resp.Body = &heldReader{ReadCloser: resp.Body, hold: hold,
		fix: func(buf []byte) error {
			for _, p := range pairs {
				for at := bytes.Index(buf, []byte(p[0])); at >= 0; at = bytes.Index(buf, []byte(p[0])) {
					copy(buf[at:], p[1])
				}
			}
			return nil
		},
		// The trailers arrive with the body's end, before they are sent on.
		atEOF: func() { hideAll(resp.Trailer) }}
	return nil
}
