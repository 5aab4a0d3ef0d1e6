package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// AuthGit is --auth git: the host's git user.name and user.email, no credential.
const AuthGit = "git"

// RuleAuthDoor refuses an --auth the profile has not consented to.
const RuleAuthDoor = "auth-door"

// authPreset is what --auth NAME asks for: a declared secret of that name, injected by the
// gateway; Lines is the profile's declaration, for the refusal's fix.
type authPreset struct {
	Lines string
}

// authPresets are the --auth names that hand over a credential; each needs the profile to
// declare a secret of that name for injection (its value never enters the container).
var authPresets = map[string]authPreset{
	"anthropic": {Lines: `spec.secrets:
  - name: anthropic
    fromEnv: ANTHROPIC_API_KEY
    inject: [{hosts: [api.anthropic.com]}]`},
	"openai": {Lines: `spec.secrets:
  - name: openai
    fromEnv: OPENAI_API_KEY
    inject: [{hosts: [api.openai.com]}]`},
	"gh": {Lines: `spec.secrets:
  - name: gh
    fromCommand: [gh, auth, token]
    target: GH_TOKEN
    inject:
      - {hosts: [api.github.com], header: Authorization, scheme: Bearer}
      - {hosts: [github.com], header: Authorization, scheme: Basic, user: x-access-token}`},
}

// AuthNames lists what --auth accepts.
func AuthNames() []string {
	out := []string{AuthGit}
	for n := range authPresets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// decideAuth admits each --auth the profile consents to: git when the tool has gitIdentity;
// a credential when the profile declares a secret of that name for injection and the tool
// lists it (it then goes through the secrets door as --secret NAME would). Any other is
// refused, with the lines to add.
func (d *Decision) decideAuth(p *profile.Profile, entry *profile.Tool, req *Request) {
	for _, name := range req.Auth {
		subject := "--auth " + name
		if name == AuthGit {
			switch {
			case req.Tool == tool.Shell || entry == nil:
				d.refuse(Refusal{Subject: subject, Rule: RuleAuthDoor, Reason: "only an enabled tool receives the git identity", Fix: "use run --tool NAME with a tool the profile enables"})
			case !entry.GitIdentity:
				d.refuse(Refusal{Subject: subject, Rule: RuleAuthDoor, Reason: fmt.Sprintf("the profile does not let tool %s have the host's git identity", req.Tool),
					Fix: fmt.Sprintf("add gitIdentity: true under spec.tools.%s", req.Tool)})
			default:
				d.GitIdentity = true
			}
			continue
		}
		preset, ok := authPresets[name]
		if !ok {
			d.refuse(Refusal{Subject: subject, Rule: RuleAuthDoor, Reason: "not a known credential", Fix: "use one of " + strings.Join(AuthNames(), ", ")})
			continue
		}
		var declared *profile.Secret
		for i := range p.Spec.Secrets {
			if p.Spec.Secrets[i].Name == name {
				declared = &p.Spec.Secrets[i]
			}
		}
		switch {
		case declared == nil || len(declared.Inject) == 0:
			what := "does not declare secret " + name
			if declared != nil {
				what = "declares secret " + name + " without inject (its value would enter the container)"
			}
			d.refuse(Refusal{Subject: subject, Rule: RuleAuthDoor, Reason: "the profile " + what,
				Fix: fmt.Sprintf("add to the profile (its network must be gateway):\n    %s\n  and list %s in spec.tools.%s.secrets", strings.ReplaceAll(preset.Lines, "\n", "\n    "), name, toolOrName(req.Tool))})
		case !contains(req.Secrets, name):
			req.Secrets = append(req.Secrets, name) // the secrets door decides the rest
		}
	}
}

func toolOrName(t string) string {
	if t == tool.Shell {
		return "TOOL"
	}
	return t
}

// decideInjection hands the admitted injected secrets to the gateway: each host must be one
// the egress policy lets the session reach.
func (d *Decision) decideInjection(p *profile.Profile) {
	declared := map[string]profile.Secret{}
	for _, s := range p.Spec.Secrets {
		declared[s.Name] = s
	}
	var pol *egress.Policy
	if d.Egress != nil {
		if ep, err := d.Egress.Policy(); err == nil {
			pol = &ep
		}
	}
	for i := range d.Secrets {
		sd := &d.Secrets[i]
		sec := declared[sd.Name]
		if !sd.Allowed || len(sec.Inject) == 0 {
			continue
		}
		sd.Inject = sec.Inject
		if pol == nil {
			sd.Allowed, sd.Reason = false, "is injected by the egress gateway, and the session has none"
			d.refuse(Refusal{Subject: "secret " + sd.Name, Rule: RuleSecretDoor, Reason: sd.Reason, Fix: "set spec.network: gateway"})
			continue
		}
		for _, in := range sec.Inject {
			for _, h := range in.Hosts {
				host, port, err := egress.SplitInjectHost(h)
				if err != nil {
					continue // the profile's check reported it
				}
				if v := pol.Decide(host, port); !v.Allowed {
					sd.Allowed, sd.Reason = false, fmt.Sprintf("is injected for %s, which the egress policy does not allow: %s", h, v.Reason)
					d.refuse(Refusal{Subject: "secret " + sd.Name, Rule: RuleSecretDoor, Reason: sd.Reason,
						Fix: fmt.Sprintf("add %s to spec.network.egress.allow (or --allow-host %s)", h, h)})
				}
			}
			d.Egress.Inject = append(d.Egress.Inject, egress.Injection{Name: sd.Name, Hosts: in.Hosts, Header: in.Header, Scheme: in.Scheme, User: in.User})
		}
	}
}
