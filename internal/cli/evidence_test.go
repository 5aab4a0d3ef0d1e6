package cli

import (
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
)

// TestInspectEscapesWhatTheAgentWrote: a bundle's values can hold what the agent chose — a
// host it asked the gateway for, a command, a repository path — and evidence inspect prints
// none of their control or bidirectional characters raw to the reviewer's terminal.
func TestInspectEscapesWhatTheAgentWrote(t *testing.T) {
	evil := "\u009b2J\x1b]52;c;aGk=\x07\u202e"
	p := &evidence.Predicate{Command: []string{"sh", "-c", "echo " + evil}, Repo: evidence.Repo{Path: "/r" + evil},
		Egress: &evidence.Egress{Attempts: 1, Denied: 1, Log: "egress.jsonl", Destinations: []evidence.EgressDestination{{Host: evil + ".example", Port: 443, Denied: 1}}}}
	p.Session.ID, p.Tool.Name = "s"+evil, "shell"
	var out strings.Builder
	if err := writeBundleSummary(&out, evidence.Inspected{Dir: "/b" + evil, Predicate: p}); err != nil {
		t.Fatal(err)
	}
	if err := writeBundleTable(&out, []evidence.Inspected{{Dir: "/b", Predicate: p}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\u009b\u202e") {
		t.Errorf("control characters reached the output:\n%q", out.String())
	}
	if !strings.Contains(out.String(), `\u009b2J\x1b]52`) {
		t.Errorf("the escaped form is not shown:\n%s", out.String())
	}
}
