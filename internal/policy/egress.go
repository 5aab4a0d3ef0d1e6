package policy

import (
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// EgressDecision is the session's egress policy, each rule with where it comes from: the
// profile, the tool's own hosts (the tool catalog) or the command line (--allow-host).
type EgressDecision struct {
	Allow []EgressRule `json:"allow"`
	Deny  []EgressRule `json:"deny"`
	// Unallowed are hosts the tool's catalog entry lists without allowing them (its
	// telemetry): shown so that a denial of one is no surprise.
	Unallowed []EgressRule `json:"unallowed,omitempty"`
	// Inject are the secrets the gateway injects, for which hosts and how (never values).
	Inject []egress.Injection `json:"inject,omitempty"`
}

// EgressRule is one rule as written, and its source.
type EgressRule = egress.RuleText

// Sources of egress rules.
const (
	SourceProfile   = "profile"
	SourceAllowHost = "--allow-host (this session only)"
)

// ToolSource names a tool's catalog hosts as a rule source.
func ToolSource(name, purpose string) string { return "tool " + name + " (" + purpose + ")" }

func decideEgress(e *profile.Egress, req Request) *EgressDecision {
	d := &EgressDecision{Allow: []EgressRule{}, Deny: []EgressRule{}}
	if e != nil {
		for _, r := range e.Allow {
			d.Allow = append(d.Allow, EgressRule{Rule: r, Source: SourceProfile})
		}
		for _, r := range e.Deny {
			d.Deny = append(d.Deny, EgressRule{Rule: r, Source: SourceProfile})
		}
	}
	if def, ok := tool.Builtin(req.Tool); ok && e.UseToolHosts() {
		for _, h := range def.Hosts {
			r := EgressRule{Rule: h.Host, Source: ToolSource(def.Name, h.Purpose)}
			if h.Allowed() {
				d.Allow = append(d.Allow, r)
			} else {
				d.Unallowed = append(d.Unallowed, r)
			}
		}
	}
	for _, r := range req.AllowHosts {
		d.Allow = append(d.Allow, EgressRule{Rule: r, Source: SourceAllowHost})
	}
	return d
}

// Rules is the decision as a gateway is given it.
func (d *EgressDecision) Rules() egress.Rules {
	return egress.Rules{Allow: d.Allow, Deny: d.Deny, Inject: d.Inject}
}

// Policy is the decision as the gateway applies it. The rules were checked when the profile
// and the command line were read; one that does not parse is an error here too.
func (d *EgressDecision) Policy() (egress.Policy, error) { return d.Rules().Policy() }
