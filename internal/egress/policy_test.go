package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func mustPolicy(t testing.TB, allow, deny []string) Policy {
	t.Helper()
	var p Policy
	for _, a := range allow {
		r, err := ParseRule(a, "test")
		if err != nil {
			t.Fatalf("allow %q: %v", a, err)
		}
		p.Allow = append(p.Allow, r)
	}
	for _, d := range deny {
		r, err := ParseRule(d, "test")
		if err != nil {
			t.Fatalf("deny %q: %v", d, err)
		}
		p.Deny = append(p.Deny, r)
	}
	return p
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "api.anthropic.com", want: "api.anthropic.com"},
		{in: "API.Anthropic.COM.", want: "api.anthropic.com"},
		{in: "*.github.com:443", want: "*.github.com:443"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "10.0.0.5:22", want: "10.0.0.5:22"},
		{in: "[::1]:8080", want: "[::1]:8080"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "192.168.1.7/24", want: "192.168.1.0/24"},
		{in: "::ffff:127.0.0.1", want: "127.0.0.1"},
		{in: "", err: "empty"},
		{in: "*.com", err: "two labels"},
		{in: "a.*.example.com", err: "only as a leading"},
		{in: "host:0", err: "port must be"},
		{in: "host:99999", err: "port must be"},
		{in: "host:http", err: "port must be"},
		{in: "[::1", err: "missing ]"},
		{in: "[::1]x", err: "unexpected"},
		{in: "user@host", err: "not a host name"},
		{in: "ex ample.com", err: "not a host name"},
		{in: "2130706433:9999", err: "write it as a dotted address"},
		{in: "127.1", err: "write it as a dotted address"},
		{in: "0x7f000001", err: "write it as a dotted address"},
		{in: "017700000001", err: "write it as a dotted address"},
		{in: "1.2.3.4.5", err: "write it as a dotted address"},
		{in: "123.example", want: "123.example"},
		{in: "0xdead.example", want: "0xdead.example"},
	} {
		r, err := ParseRule(tc.in, "test")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRule(%q) = %v, %v; want an error with %q", tc.in, r, err, tc.err)
			}
			continue
		}
		if err != nil || r.String() != tc.want {
			t.Errorf("ParseRule(%q) = %q, %v; want %q", tc.in, r, err, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	p := mustPolicy(t,
		[]string{"api.anthropic.com", "*.github.com:443", "github.com:22", "10.1.2.3:5432", "[2001:db8::1]:443", "bücher.example"},
		[]string{"gist.github.com", "10.1.2.3:5432"})
	for _, tc := range []struct {
		host    string
		port    int
		allowed bool
		rule    string
	}{
		{"api.anthropic.com", 443, true, "api.anthropic.com"},
		{"API.ANTHROPIC.COM.", 443, true, "api.anthropic.com"},
		{"api.anthropic.com", 8443, true, "api.anthropic.com"}, // no port in the rule: any port
		{"evil-api.anthropic.com", 443, false, ""},
		{"anthropic.com", 443, false, ""},
		{"codeload.github.com", 443, true, "*.github.com:443"},
		{"codeload.github.com", 80, false, ""},
		{"github.com", 443, false, ""}, // *.github.com does not cover the apex
		{"github.com", 22, true, "github.com:22"},
		{"gist.github.com", 443, false, "gist.github.com"}, // deny wins
		{"10.1.2.3", 5432, false, "10.1.2.3:5432"},         // deny wins over the same allow
		{"[2001:db8::1]", 443, true, "[2001:db8::1]:443"},
		{"2001:db8::1", 443, true, "[2001:db8::1]:443"},
		{"xn--bcher-kva.example", 443, true, "xn--bcher-kva.example"},
		{"BÜCHER.example", 443, true, "xn--bcher-kva.example"},
		{"fe80::1%eth0", 443, false, ""},
		{"*.github.com", 443, false, ""},
		{"", 443, false, ""},
	} {
		v := p.Decide(tc.host, tc.port)
		if v.Allowed != tc.allowed || v.Rule != tc.rule {
			t.Errorf("Decide(%q, %d) = %+v; want allowed=%v rule=%q", tc.host, tc.port, v, tc.allowed, tc.rule)
		}
		if !v.Allowed && v.Reason == "" {
			t.Errorf("Decide(%q, %d): a denial without a reason", tc.host, tc.port)
		}
	}
	if v := p.Decide("other.example", 443); !strings.Contains(v.Reason, "--allow-host other.example:443") {
		t.Errorf("the reason does not say how to allow it: %s", v.Reason)
	}
}

func TestCheckAddress(t *testing.T) {
	p := mustPolicy(t, []string{"example.com", "127.0.0.1:8080", "10.9.0.0/16"}, []string{"203.0.113.0/24"})
	own := func(a netip.Addr) bool { return a == netip.MustParseAddr("198.51.100.7") }
	for _, tc := range []struct {
		addr string
		port int
		want string // "" allowed, else a word of the refusal
	}{
		{"93.184.216.34", 443, ""},
		{"127.0.0.1", 443, "loopback"},
		{"127.0.0.1", 8080, ""}, // named explicitly, with its port
		{"::1", 443, "loopback"},
		{"::ffff:127.0.0.1", 443, "loopback"},
		{"169.254.169.254", 80, "metadata"},
		{"fd00:ec2::254", 80, "metadata"},
		{"100.100.100.200", 80, "metadata"},
		{"169.254.10.1", 80, "link-local"},
		{"fe80::1", 80, "link-local"},
		{"10.0.0.1", 80, "private"},
		{"10.9.3.4", 80, ""}, // inside an allowed prefix
		{"172.16.0.1", 80, "private"},
		{"192.168.0.1", 80, "private"},
		{"fc00::1", 80, "private"},
		{"100.64.0.1", 80, "carrier-grade"},
		{"0.0.0.0", 80, "unspecified"},
		{"0.1.2.3", 80, "reserved"},
		{"240.0.0.1", 80, "reserved"},
		{"239.1.2.3", 80, "multicast"},
		{"224.0.0.251", 80, "multicast"},
		{"198.51.100.7", 443, "own"},
		{"203.0.113.9", 443, "denied by rule"},
	} {
		err := p.CheckAddress(netip.MustParseAddr(tc.addr), tc.port, own)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckAddress(%s, %d) = %v; want %q", tc.addr, tc.port, err, tc.want)
		}
	}
}

// TestWideRulesDoNotOpenSpecialAddresses: a rule opens a loopback, private, link-local,
// metadata or own address only when it lies inside that address's range; 0.0.0.0/0 or ::/0
// ("the internet") opens none of them, and the unspecified, reserved and multicast addresses
// (0.0.0.0 reaches the host itself) no rule opens. Found by a probe: --allow-host 0.0.0.0/0
// reached the host's loopback services and the metadata address.
func TestWideRulesDoNotOpenSpecialAddresses(t *testing.T) {
	own := func(a netip.Addr) bool { return a == netip.MustParseAddr("198.51.100.7") }
	for _, tc := range []struct {
		rules []string
		addr  string
		want  string // "" allowed, else a word of the refusal
	}{
		{[]string{"0.0.0.0/0"}, "93.184.216.34", ""},
		{[]string{"0.0.0.0/0"}, "127.0.0.1", "loopback"},
		{[]string{"0.0.0.0/0"}, "0.0.0.0", "unspecified"},
		{[]string{"0.0.0.0/0"}, "169.254.169.254", "metadata"},
		{[]string{"0.0.0.0/0"}, "10.1.2.3", "private"},
		{[]string{"0.0.0.0/0"}, "198.51.100.7", "own"},
		{[]string{"::/0"}, "::1", "loopback"},
		{[]string{"::/0"}, "::", "unspecified"},
		{[]string{"::/0"}, "2606:4700::1", ""},
		{[]string{"0.0.0.0/8"}, "0.0.0.0", "unspecified"},
		{[]string{"0.0.0.0"}, "0.0.0.0", "whatever the rules"},
		{[]string{"::"}, "::", "whatever the rules"},
		{[]string{"224.0.0.0/4"}, "224.0.0.1", "whatever the rules"},
		{[]string{"255.255.255.255"}, "255.255.255.255", "whatever the rules"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3", ""},
		{[]string{"10.0.0.0/7"}, "10.1.2.3", "private"}, // wider than the private range
		{[]string{"127.0.0.0/8"}, "127.0.0.2", ""},
		{[]string{"169.254.0.0/16"}, "169.254.169.254", "metadata"},
		{[]string{"169.254.169.254"}, "169.254.169.254", ""},
		{[]string{"198.51.100.0/24"}, "198.51.100.7", "own"},
		{[]string{"198.51.100.7"}, "198.51.100.7", ""},
	} {
		p := mustPolicy(t, tc.rules, nil)
		err := p.CheckAddress(netip.MustParseAddr(tc.addr), 443, own)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("rules %v: CheckAddress(%s) = %v; want %q", tc.rules, tc.addr, err, tc.want)
		}
	}
}

// TestReasonsBracketIPv6: the way to allow an IPv6 destination is written so that following
// it allows that address and port (::1:9998 would be another address on any port).
func TestReasonsBracketIPv6(t *testing.T) {
	var p Policy
	if v := p.Decide("::1", 9998); !strings.Contains(v.Reason, "--allow-host [::1]:9998") || strings.Contains(v.Reason, "::1:9998") {
		t.Errorf("reason %q", v.Reason)
	}
}

// FuzzDecide: the matcher never panics, is insensitive to case and a trailing dot, lets deny
// win, and never lets a wildcard cover its own suffix.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"api.anthropic.com", "GITHUB.com.", "a.b.github.com", "[::1]", "127.0.0.1", "xn--bcher-kva.example",
		"bücher.example", "*.github.com", "", ".", "..", "a..b", "%", "[fe80::1%25eth0]", "1.2.3.4.5", "-x-.com"} {
		f.Add(s, uint16(443))
	}
	p := mustPolicy(f, []string{"api.anthropic.com", "*.github.com", "*.example.test:8443", "10.0.0.0/8:22", "[::1]:443"}, []string{"bad.github.com", "10.6.6.6"})
	f.Fuzz(func(t *testing.T, host string, port uint16) {
		v := p.Decide(host, int(port))
		if !v.Allowed && v.Reason == "" {
			t.Fatalf("denial without a reason for %q", host)
		}
		if lower := p.Decide(strings.ToLower(host), int(port)); lower.Allowed != v.Allowed {
			t.Fatalf("case changes the verdict for %q: %v vs %v", host, v, lower)
		}
		if !strings.HasSuffix(host, ".") && !strings.HasPrefix(host, "[") {
			if dot := p.Decide(host+".", int(port)); dot.Allowed != v.Allowed {
				t.Fatalf("a trailing dot changes the verdict for %q", host)
			}
		}
		name, _, err := destination(host)
		if v.Allowed && err == nil && (name == "github.com" || name == "bad.github.com") {
			t.Fatalf("%q allowed: a wildcard covered its suffix or deny lost", host)
		}
	})
}
