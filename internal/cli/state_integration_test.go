package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationToolStatePersists: what a tool writes to its state directory in one session
// is there in the next (the stub tools keep a history there, as the real ones keep their
// login); another tool or another profile starts empty; the evidence names the volume;
// state list shows it and state rm removes it, after which the tool starts empty again.
func TestIntegrationToolStatePersists(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	profileNamed := func(name string) string {
		p := filepath.Join(w.home, name+".yaml")
		body := fmt.Sprintf(`apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: %s}
spec:
  host: {os: linux}
  image: {ref: %s}
  tools:
    codex: {enabled: true}
    claude-code: {enabled: true}
  resources: {cpus: 1, memoryMiB: 256, pids: 64}
`, name, podmantest.Image)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine, other := profileNamed("state-a"), profileNamed("state-b")
	t.Cleanup(func() {
		for _, v := range []string{"sosctl-state-state-a-codex", "sosctl-state-state-a-claude-code", "sosctl-state-state-b-codex"} {
			_, _ = e.Podman("volume", "rm", v)
		}
	})
	session := func(profile, tool, word string) (string, string) {
		t.Helper()
		f, out, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", profile, "am", "run", "--tool", tool, "--repo", w.repo, "--", word); code != 0 {
			t.Fatalf("%s %s: exit %d\n%s\n%s", profile, tool, code, out, errOut)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if h, ok := strings.CutPrefix(line, "history="); ok {
				return h, errOut.String()
			}
		}
		t.Fatalf("%s %s: no history line:\n%s", profile, tool, out)
		return "", ""
	}
	if h, _ := session(mine, "codex", "first"); h != "first|" {
		t.Errorf("first session's history %q", h)
	}
	h, stderr := session(mine, "codex", "second")
	if h != "first|second|" {
		t.Errorf("the second session does not see the first's state: history %q", h)
	}
	// A symlink the agent plants in its state, naming a file of the host's (which the
	// container cannot see): the next session's ownership fix-up of the volume changes the
	// link, never what it names.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host file"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(victim)
	session(mine, "codex", "plant:"+victim)
	session(mine, "codex", "after the plant")
	if after, err := os.Stat(victim); err != nil || after.Sys().(*syscall.Stat_t).Uid != before.Sys().(*syscall.Stat_t).Uid || after.Mode() != before.Mode() {
		t.Errorf("the host file a planted symlink names was changed: %v %v", err, after)
	}
	if h, _ := session(mine, "claude-code", "x"); h != "x|" {
		t.Errorf("another tool sees codex's state: history %q", h)
	}
	if h, _ := session(other, "codex", "y"); h != "y|" {
		t.Errorf("another profile sees this one's state: history %q", h)
	}
	named := false
	for _, m := range verifyBundle(t, w, bundleFrom(t, stderr)).Mounts {
		named = named || m.Source == "volume:sosctl-state-state-a-codex" && m.Target == "/run/sourceos-state" && !m.ReadOnly
	}
	if !named {
		t.Error("the evidence does not name the state volume among the mounts")
	}

	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", mine, "am", "state", "list", "-o", "json"); code != 0 {
		t.Fatalf("state list: exit %d\n%s", code, errOut)
	}
	var list []agentmachine.ToolState
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("state list -o json: %v\n%s", err, out)
	}
	found := map[string]string{}
	for _, s := range list {
		found[s.Volume] = s.Profile + "/" + s.Tool
	}
	if found["sosctl-state-state-a-codex"] != "state-a/codex" || found["sosctl-state-state-b-codex"] != "state-b/codex" || found["sosctl-state-state-a-claude-code"] != "state-a/claude-code" {
		t.Errorf("state list: %+v", list)
	}

	// Not a terminal and no --yes: refused, nothing removed; with --yes, removed.
	f, _, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", mine, "am", "state", "rm", "--tool", "codex"); code != 2 || !strings.Contains(errOut.String(), "needs --yes") {
		t.Errorf("state rm without --yes: exit %d\n%s", code, errOut)
	}
	f, _, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", mine, "am", "state", "rm", "not-a-state-volume", "--yes"); code != 2 || !strings.Contains(errOut.String(), "is not a tool state volume") {
		t.Errorf("state rm of another volume: exit %d\n%s", code, errOut)
	}
	f, out, errOut = sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", mine, "am", "state", "rm", "--tool", "codex", "--yes"); code != 0 || !strings.Contains(out.String(), "removed sosctl-state-state-a-codex") {
		t.Fatalf("state rm: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := e.Podman("volume", "exists", "sosctl-state-state-a-codex"); err == nil {
		t.Error("the volume is still there")
	}
	if h, _ := session(mine, "codex", "third"); h != "third|" {
		t.Errorf("after state rm, history %q", h)
	}
}
