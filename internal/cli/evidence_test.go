package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
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

// TestEvidenceLogCommands: the log's commands on a log, on what is not one, and on bad
// input, with their exit codes and messages.
func TestEvidenceLogCommands(t *testing.T) {
	base, pub, key, evDir, write := evidenceFixture(t)
	unlogged := write("20261202t100000z-000000000001")
	noLogDir := filepath.Dir(unlogged)
	run1 := func(args ...string) (int, string) {
		f, out, errOut := testFactory(t)
		code := run(t, f, append([]string{"am", "evidence"}, args...)...)
		return code, out.String() + errOut.String()
	}
	notPEM := filepath.Join(base, "not.pem")
	garbage := filepath.Join(base, "garbage.checkpoint")
	for p, data := range map[string]string{notPEM: "hello", garbage: "not a checkpoint\n"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no such directory", []string{"log", "verify", filepath.Join(base, "nope"), "--key", pub}, 2, "is not an evidence directory"},
		{"a directory without a log", []string{"log", "verify", noLogDir, "--key", pub}, 2, "has no session log"},
		{"checkpoint of a directory without a log", []string{"log", "checkpoint", noLogDir, "--key", pub}, 2, "has no session log"},
		{"a key that is not PEM", []string{"log", "verify", noLogDir, "--key", notPEM}, 2, "--key"},
		{"no key and none on this host", []string{"log", "verify", noLogDir}, 2, "no --key given"},
		{"an unlogged bundle is reported", []string{"verify", unlogged, "--key", pub}, 0, "in no session log"},
		{"an unlogged bundle fails --strict", []string{"verify", unlogged, "--key", pub, "--strict"}, 1, "log check failed: the bundle is in no session log"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run1(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
	logged := write("20261202t100000z-000000000002")
	if _, err := evidencelog.Append(logged, key.Signer); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a kept checkpoint that is missing", []string{"log", "verify", evDir, "--key", pub, "--since", filepath.Join(base, "nope")}, 2, "--since"},
		{"a kept checkpoint that is not one", []string{"log", "verify", evDir, "--key", pub, "--since", garbage}, 2, "not a signed checkpoint: malformed note"},
		{"the log adopted the earlier bundle", []string{"log", "verify", evDir, "--key", pub}, 0, "2 entries under the latest signed checkpoint"},
		{"checkpoint prints the signed note", []string{"log", "checkpoint", evDir, "--key", pub}, 0, "\n2\n"},
		{"--fast checks the log without reading bundles", []string{"log", "verify", evDir, "--key", pub, "--fast"}, 0, "2 entries under the latest signed checkpoint"},
		{"the logged bundle's place", []string{"verify", logged, "--key", pub, "--strict"}, 0, "session log: entry 1; the log's latest checkpoint (2 entries) still holds it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run1(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

// TestEvidenceReportCommand: the report as JSON (valid against its schema), as a page, and
// as a summary, with exit 1 once a bundle fails; conflicting outputs are a usage error.
func TestEvidenceReportCommand(t *testing.T) {
	base, pub, key, evDir, write := evidenceFixture(t)
	var dirs []string
	for i := 0; i < 3; i++ {
		dir := write(fmt.Sprintf("20261202t10000%dz-00000000000%d", i, i))
		if _, err := evidencelog.Append(dir, key.Signer); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	report := func(args ...string) (int, string, string) {
		f, out, errOut := testFactory(t)
		code := run(t, f, append([]string{"am", "evidence", "report", evDir, "--key", pub}, args...)...)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := report("-o", "json")
	if code != 0 {
		t.Fatalf("report -o json: exit %d\n%s", code, errOut)
	}
	validateAgainst(t, "agent-machine-report.schema.json", []byte(out))
	if code, out, _ := report(); code != 0 || !strings.Contains(out, "3 sessions, 3 verified, 0 failed; session log verified (3 entries)") {
		t.Errorf("report: exit %d\n%s", code, out)
	}
	page := filepath.Join(base, "report.html")
	if code, _, errOut := report("--html", page); code != 0 || !strings.Contains(errOut, "Wrote "+page) {
		t.Errorf("report --html: exit %d\n%s", code, errOut)
	}
	if data, err := os.ReadFile(page); err != nil || !strings.Contains(string(data), "No verification failures") {
		t.Errorf("the page: %v", err)
	}
	if code, _, errOut := report("--html", page, "-o", "json"); code != 2 || !strings.Contains(errOut, "choose one") {
		t.Errorf("--html with -o json: exit %d\n%s", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(dirs[1], "artifacts", "session.log"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = report("-o", "json")
	if code != 1 || !strings.Contains(out, `"check": "artifacts"`) || !strings.Contains(out, filepath.Base(dirs[1])) {
		t.Errorf("a failed bundle: exit %d\n%s", code, out)
	}
	validateAgainst(t, "agent-machine-report.schema.json", []byte(out))
}

// evidenceFixture is an evidence key (its public key at pub) and write, which signs a
// bundle for a session id into evDir, not logged.
func evidenceFixture(t *testing.T) (base, pub string, key *evidence.Key, evDir string, write func(id string) string) {
	t.Helper()
	base = t.TempDir()
	pub = filepath.Join(base, "evidence.pub")
	key, err := evidence.LoadOrCreateKey(filepath.Join(base, "evidence.key"), pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	evDir = filepath.Join(base, "evidence")
	write = func(id string) string {
		t.Helper()
		dir, err := evidence.Write(evDir, id, evidence.SamplePredicate(id), []evidence.Artifact{{Name: "session.log", Data: []byte(id)}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return base, pub, key, evDir, write
}
