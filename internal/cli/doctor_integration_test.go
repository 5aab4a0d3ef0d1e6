package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/schemas"
)

func validateAgainst(t *testing.T, schemaFile string, doc []byte) {
	t.Helper()
	raw, err := schemas.FS.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaFile, s); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, doc)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("output does not match %s: %v", schemaFile, err)
	}
}

// snapshot lists every file under dirs and every Podman object, to prove a command changed
// nothing.
func snapshot(t *testing.T, env *podmantest.Env, dirs []string) string {
	t.Helper()
	var lines []string
	for _, d := range dirs {
		_ = filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
			if err == nil {
				lines = append(lines, p+" "+info.Mode().String())
			}
			return nil
		})
	}
	for _, args := range [][]string{{"ps", "-a", "--format", "{{.ID}}"}, {"images", "--format", "{{.ID}}"}, {"secret", "ls", "--format", "{{.ID}}"}, {"volume", "ls", "--format", "{{.Name}}"}} {
		out, err := env.Podman(args...)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Join(args[:1], " ")+": "+strings.Join(strings.Fields(out), ","))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestIntegrationDoctorReadsOnly(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, out, errOut := sessionFactory(t, e, w, nil)
	cfg := filepath.Join(w.home, "cfg")
	before := snapshot(t, e, []string{w.home, cfg})
	code := run(t, f, "--profile", w.profile, "am", "doctor", "--repo", w.repo, "-o", "json")
	if code != 0 && code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	validateAgainst(t, "agent-machine-doctor.schema.json", out.Bytes())
	var r struct {
		Checks []struct{ ID, Status, Finding string }
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	for _, c := range r.Checks {
		statuses[c.ID] = c.Status + ": " + c.Finding
	}
	for id, want := range map[string]string{"podman-api": "ok: " + e.URI, "image": "ok: " + "localhost/sourceosctl-test/agent:latest is present", "profile": "ok: it ", "repo": "warn: "} {
		if !strings.HasPrefix(statuses[id], want) {
			t.Errorf("%s = %q, want prefix %q", id, statuses[id], want)
		}
	}
	if after := snapshot(t, e, []string{w.home, cfg}); after != before {
		t.Errorf("doctor changed something:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestIntegrationDoctorWithoutPodmanExitsOneWithTheFix(t *testing.T) {
	podmantest.Need(t)
	f, out, _ := testFactory(t)
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return "unix:///nonexistent/podman.sock"
		}
		return ""
	}
	if code := run(t, f, "am", "doctor"); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), "[FAIL]  Podman API") || !strings.Contains(out.String(), "fix: podman system service --time=0 unix:///nonexistent/podman.sock &") {
		// CONTAINER_HOST set explicitly: the fix starts that service, not a local one.
		t.Errorf("report:\n%s", out)
	}
}
