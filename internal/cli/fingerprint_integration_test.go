package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

func TestIntegrationFingerprintIsValidAndHoldsNoEnvironment(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "fingerprint", "--repo", w.repo); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	validateAgainst(t, "agent-machine-fingerprint.schema.json", out.Bytes())
	var fp fingerprint.Fingerprint
	if err := json.Unmarshal(out.Bytes(), &fp); err != nil {
		t.Fatal(err)
	}
	imageID, _ := e.Podman("image", "inspect", "--format", "{{.ID}}", podmantest.Image)
	if fp.PodmanServer.Connection != e.URI || fp.PodmanServer.Version == "" || fp.Image.ID != strings.TrimSpace(imageID) {
		t.Errorf("server %+v image %+v", fp.PodmanServer, fp.Image)
	}
	if fp.Profile.Name != "it" || len(fp.Profile.SHA256) != 64 || !strings.HasPrefix(fp.Policy.Hash, "sha256:") || fp.Policy.Repo != w.repo {
		t.Errorf("profile %+v policy %+v", fp.Profile, fp.Policy)
	}
	if strings.Contains(out.String(), testSecretValue) || strings.Contains(out.String(), "TEST_API_KEY=") {
		t.Error("the fingerprint contains environment values")
	}

	// The same request as a dry run gives the same policy hash.
	f, plan, _ := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "json"); code != 0 {
		t.Fatal("dry run failed")
	}
	var p struct{ PolicyHash string }
	_ = json.Unmarshal(plan.Bytes(), &p)
	if p.PolicyHash != fp.Policy.Hash {
		t.Errorf("fingerprint policy hash %s, dry run %s", fp.Policy.Hash, p.PolicyHash)
	}
}

func TestFingerprintWithoutPodmanSaysWhy(t *testing.T) {
	f, out, _ := testFactory(t)
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return "unix:///nonexistent/podman.sock"
		}
		return ""
	}
	if code := run(t, f, "am", "fingerprint"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	validateAgainst(t, "agent-machine-fingerprint.schema.json", out.Bytes())
	if !strings.Contains(out.String(), `"absent": "cannot reach the Podman API at unix:///nonexistent/podman.sock`) {
		t.Errorf("fingerprint:\n%s", out)
	}
}
