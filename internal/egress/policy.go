// Package egress is the session's egress gateway: a policy of allowed and denied destinations,
// and an HTTP proxy (CONNECT and plain HTTP) that resolves names itself, dials only the address
// it checked, refuses private and metadata addresses unless a rule names them, and records every
// connection attempt for the evidence.
package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Rule is one destination: an exact host, a "*.suffix" wildcard (subdomains only, never the
// suffix itself), an IP address or CIDR prefix, and an optional port (0: any).
type Rule struct {
	Host   string       // normalised: lower case, ASCII (IDNs in punycode), no trailing dot
	Prefix netip.Prefix // set when the rule is an address or prefix
	Port   int
	Source string // where the rule comes from: "profile", "tool claude-code", "--allow-host"
}

// String is the rule as written.
func (r Rule) String() string {
	h := r.Host
	if r.Prefix.IsValid() {
		h = r.Prefix.String()
		if r.Prefix.IsSingleIP() {
			h = r.Prefix.Addr().String()
		}
		if r.Port != 0 && r.Prefix.Addr().Is6() {
			h = "[" + h + "]"
		}
	}
	if r.Port != 0 {
		return h + ":" + strconv.Itoa(r.Port)
	}
	return h
}

// ParseRule reads "host", "*.suffix", "host:port", an IPv4 or [IPv6] address with an optional
// port, or a CIDR prefix.
func ParseRule(s, source string) (Rule, error) {
	r := Rule{Source: source}
	raw := strings.TrimSpace(s)
	if raw == "" {
		return r, fmt.Errorf("empty destination")
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok && scheme != "" {
		host, _, _ := strings.Cut(rest, "/")
		return r, fmt.Errorf("%q is a URL: a rule names a host, not a URL (write %s)", s, host)
	}
	hostPart, port := raw, ""
	switch {
	case strings.HasPrefix(raw, "["):
		end := strings.Index(raw, "]")
		if end < 0 {
			return r, fmt.Errorf("%q: missing ] after the IPv6 address", s)
		}
		hostPart, port = raw[1:end], strings.TrimPrefix(raw[end+1:], ":")
		if rest := raw[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return r, fmt.Errorf("%q: unexpected %q after the IPv6 address", s, rest)
		}
	case strings.Count(raw, ":") == 1:
		hostPart, port, _ = strings.Cut(raw, ":")
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return r, fmt.Errorf("%q: port must be 1-65535", s)
		}
		r.Port = p
	}
	if pfx, err := netip.ParsePrefix(hostPart); err == nil {
		r.Prefix = pfx.Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(hostPart); err == nil {
		r.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return r, nil
	}
	if numericLooking(hostPart) {
		return r, fmt.Errorf("%q looks like an IP address in a form the gateway does not read (decimal, octal, hexadecimal or shortened); write it as a dotted address such as 127.0.0.1", s)
	}
	wild := strings.HasPrefix(hostPart, "*.")
	name, err := normalise(strings.TrimPrefix(hostPart, "*."))
	if err != nil {
		return r, fmt.Errorf("%q: %v", s, err)
	}
	if strings.Contains(name, "*") {
		return r, fmt.Errorf("%q: a wildcard is allowed only as a leading \"*.\"", s)
	}
	if wild {
		if !strings.Contains(name, ".") {
			return r, fmt.Errorf("%q: a wildcard needs a suffix of two labels or more, such as *.example.com", s)
		}
		name = "*." + name
	}
	r.Host = name
	return r, nil
}

// numericLooking reports a name made only of digits and dots, or a 0x number: something a
// C resolver would read as an address (127.1, 2130706433, 0x7f000001) but no DNS name is.
func numericLooking(h string) bool {
	h = strings.ToLower(h)
	if rest, ok := strings.CutPrefix(h, "0x"); ok {
		return rest != "" && strings.Trim(rest, "0123456789abcdef.") == ""
	}
	return h != "" && strings.Trim(h, "0123456789.") == ""
}

// normalise lower-cases a host name, converts an IDN to ASCII and drops a trailing dot.
func normalise(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", fmt.Errorf("empty host")
	}
	if strings.ContainsAny(h, " /\\@?#%") {
		return "", fmt.Errorf("%q is not a host name", h)
	}
	if strings.Contains(strings.TrimPrefix(h, "*."), "*") {
		return "", fmt.Errorf("a wildcard is allowed only as a leading \"*.\"")
	}
	ascii, err := idna.Lookup.ToASCII(strings.TrimPrefix(h, "*."))
	if err != nil {
		return "", fmt.Errorf("%q is not a valid host name: %v", h, err)
	}
	if strings.HasPrefix(h, "*.") {
		ascii = "*." + ascii
	}
	return ascii, nil
}

// matches reports whether the rule covers host (normalised, or an address) and port.
func (r Rule) matches(host string, addr netip.Addr, port int) bool {
	if r.Port != 0 && r.Port != port {
		return false
	}
	if r.Prefix.IsValid() {
		return addr.IsValid() && r.Prefix.Contains(addr)
	}
	if addr.IsValid() {
		return false // a name rule never covers an address the client gave literally
	}
	if suffix, ok := strings.CutPrefix(r.Host, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return host == r.Host
}

// Policy is the session's egress policy. Deny wins over allow; nothing is allowed by default.
type Policy struct {
	Allow []Rule
	Deny  []Rule
}

// Verdict is the policy's answer for one destination.
type Verdict struct {
	Allowed bool
	Rule    string // the rule that decided ("" when nothing matched)
	Source  string // where that rule comes from
	Reason  string // for a human and an agent: why, and how to allow it
}

// Decide applies the policy to a destination as the client named it.
func (p Policy) Decide(host string, port int) Verdict {
	name, addr, err := destination(host)
	if err != nil {
		return Verdict{Reason: err.Error()}
	}
	for _, r := range p.Deny {
		if r.matches(name, addr, port) {
			return Verdict{Rule: r.String(), Source: r.Source,
				Reason: fmt.Sprintf("%s is denied by rule %s (%s); deny rules win over allow rules", net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), r, r.Source)}
		}
	}
	for _, r := range p.Allow {
		if r.matches(name, addr, port) {
			return Verdict{Allowed: true, Rule: r.String(), Source: r.Source}
		}
	}
	hp := net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
	return Verdict{Reason: fmt.Sprintf("%s is not in the session's egress allowlist; to allow it: --allow-host %s, or add it to spec.network.egress.allow in the profile", hp, hp)}
}

// destination splits what a client asked for into a normalised name or an address.
func destination(host string) (string, netip.Addr, error) {
	h := host
	bare := h
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h, bare = h[1:len(h)-1], h[1:len(h)-1]
	} else if strings.ContainsAny(h, "[]") { // brackets only around a whole IPv6 address
		return "", netip.Addr{}, fmt.Errorf("%s is not a host name or address", host)
	} else {
		bare = strings.TrimSuffix(h, ".") // an address with a trailing dot, as a name may have
	}
	if a, err := netip.ParseAddr(bare); err == nil {
		if a.Zone() != "" {
			return "", netip.Addr{}, fmt.Errorf("%s: addresses with a zone are refused", host)
		}
		return "", a.Unmap(), nil
	}
	name, err := normalise(h)
	if err != nil {
		return "", netip.Addr{}, err
	}
	if strings.HasPrefix(name, "*.") {
		return "", netip.Addr{}, fmt.Errorf("%s is not a host name", host)
	}
	return name, netip.Addr{}, nil
}

// specialRange is a range of addresses that are not on the public internet. An allow rule
// opens one of its addresses only when the rule lies entirely inside the range — 127.0.0.1:8080
// or 10.0.0.0/8:22, never 0.0.0.0/0, which merely contains it. A never range no rule opens.
type specialRange struct {
	prefix netip.Prefix
	why    string
	never  bool
}

// specialRanges, most specific first: the cloud metadata services sit inside link-local and
// private ranges and need a rule naming them alone.
var specialRanges = func() []specialRange {
	var out []specialRange
	add := func(why string, never bool, prefixes ...string) {
		for _, p := range prefixes {
			out = append(out, specialRange{netip.MustParsePrefix(p), why, never})
		}
	}
	// AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba Cloud.
	add("a cloud metadata address", false, "169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
	// Dialling the unspecified address (or anything in 0.0.0.0/8) reaches this host itself.
	add("the unspecified address, which reaches this host itself", true, "0.0.0.0/32", "::/128")
	add("a reserved address", true, "0.0.0.0/8", "240.0.0.0/4")
	add("a multicast address", true, "224.0.0.0/4", "ff00::/8")
	add("a loopback address", false, "127.0.0.0/8", "::1/128")
	add("a link-local address", false, "169.254.0.0/16", "fe80::/10")
	add("a private address", false, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	add("a carrier-grade NAT address", false, "100.64.0.0/10")
	return out
}()

// special is the range a not-public address belongs to (ok false for a public address).
func special(a netip.Addr) (specialRange, bool) {
	for _, r := range specialRanges {
		if r.prefix.Contains(a) {
			return r, true
		}
	}
	return specialRange{}, false
}

// CheckAddress says whether the gateway may dial addr for a destination the policy allowed:
// an address that is not on the public internet (loopback, link-local, private, metadata) or
// is one of the host's own is refused unless an allow rule names it explicitly — an address or
// a prefix inside its range, never a host name (a resolver controls those) nor a wider prefix;
// unspecified, reserved and multicast addresses are refused whatever the rules.
func (p Policy) CheckAddress(a netip.Addr, port int, own func(netip.Addr) bool) error {
	a = a.Unmap()
	for _, r := range p.Deny {
		if r.Prefix.IsValid() && r.matches("", a, port) {
			return fmt.Errorf("%s is denied by rule %s (%s)", a, r, r.Source)
		}
	}
	rng, isSpecial := special(a)
	switch {
	case isSpecial && rng.never:
		return fmt.Errorf("%s is %s, refused whatever the rules say", a, rng.why)
	case !isSpecial && own != nil && own(a):
		// Only a rule naming the address alone opens one of the host's own.
		rng, isSpecial = specialRange{prefix: netip.PrefixFrom(a, a.BitLen()), why: "one of this host's own addresses"}, true
	case !isSpecial:
		return nil
	}
	why := rng.why
	for _, r := range p.Allow {
		if r.Prefix.IsValid() && r.matches("", a, port) && r.Prefix.Bits() >= rng.prefix.Bits() && rng.prefix.Contains(r.Prefix.Addr()) {
			return nil
		}
	}
	return fmt.Errorf("%s is %s, refused unless an allow rule names it (such as %s)", a, why, net.JoinHostPort(a.String(), strconv.Itoa(port)))
}
