package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationDriftIsRecorded: a container changed while its tool runs — a privileged
// exec started beside a session, a root process left in a workspace during a join — is
// inspected again at the end: the record says how it drifted, `evidence verify` shows it
// and `--strict` fails on it. A session nobody touched records no drift.
func TestIntegrationDriftIsRecorded(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	pub := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys", "evidence.pub")
	verify := func(bundle string, strict bool) (int, string) {
		t.Helper()
		args := []string{"am", "evidence", "verify", bundle, "--key", pub}
		if strict {
			args = append(args, "--strict")
		}
		f, out, errOut := testFactory(t)
		code := run(t, f, args...)
		return code, out.String() + errOut.String()
	}
	checksOf := func(bundle string) *evidence.Checks {
		t.Helper()
		st, err := evidence.ReadUnverified(bundle)
		if err != nil || st.Predicate.Checks == nil {
			t.Fatalf("bundle %s: %v", bundle, err)
		}
		return st.Predicate.Checks
	}

	t.Run("a session nobody touched", func(t *testing.T) {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true"); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		bundle := bundleFrom(t, errOut.String())
		if c := checksOf(bundle); c.Drift != agentmachine.DriftNone || len(c.DriftDifferences) != 0 {
			t.Errorf("drift = %q %v, want none", c.Drift, c.DriftDifferences)
		}
		if code, out := verify(bundle, true); code != 0 {
			t.Errorf("verify --strict of an untouched session: exit %d\n%s", code, out)
		}
	})

	t.Run("a privileged exec beside a session", func(t *testing.T) {
		cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "4")
		var stderr safeBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		name := waitForSession(t, e)
		if out, err := e.Podman("exec", "-d", "--privileged", "-u", "0", name, "sleep", "60"); err != nil {
			t.Fatalf("podman exec: %v\n%s", err, out)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("session: %v\n%s", err, stderr.String())
		}
		bundle := bundleFrom(t, stderr.String())
		c := checksOf(bundle)
		if c.Drift != agentmachine.DriftDiffers || !strings.Contains(strings.Join(c.DriftDifferences, ";"), "ran privileged (sleep 60)") {
			t.Errorf("drift = %q %v, want the privileged exec", c.Drift, c.DriftDifferences)
		}
		if code, out := verify(bundle, false); code != 0 || !strings.Contains(out, "! the container changed while the tool ran: exec session") {
			t.Errorf("verify shows the drift: exit %d\n%s", code, out)
		}
		if code, out := verify(bundle, true); code != 1 || !strings.Contains(out, "drift check failed") {
			t.Errorf("verify --strict fails on the drift: exit %d\n%s", code, out)
		}
	})

	t.Run("a root process left in a workspace during a join", func(t *testing.T) {
		cli := workspaceCLI(t, e, w, "drift")
		if code, _, stderr := cli("up", "--repo", w.repo, "--name", "drift"); code != 0 {
			t.Fatalf("up: exit %d\n%s", code, stderr)
		}
		ws := agentmachine.WorkspaceContainer("drift")
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(1500 * time.Millisecond)
			if out, err := e.Podman("exec", "-d", "-u", "0", ws, "sleep", "600"); err != nil {
				t.Errorf("podman exec: %v\n%s", err, out)
			}
		}()
		code, _, stderr := cli("exec", "--name", "drift", "--", "sleep", "4")
		<-done
		if code != 0 {
			t.Fatalf("join: exit %d\n%s", code, stderr)
		}
		bundle := bundleFrom(t, stderr)
		c := checksOf(bundle)
		if c.Drift != agentmachine.DriftDiffers || !strings.Contains(strings.Join(c.DriftDifferences, ";"), "as user 0") {
			t.Errorf("join drift = %q %v, want the root exec", c.Drift, c.DriftDifferences)
		}
		if code, out := verify(bundle, true); code != 1 || !strings.Contains(out, "drift check failed") {
			t.Errorf("verify --strict of the join: exit %d\n%s", code, out)
		}
		// The next join is refused by the join's own check, as before.
		if code, _, stderr := cli("exec", "--name", "drift", "--", "true"); code == 0 || !strings.Contains(stderr, "as user 0") {
			t.Errorf("the next join: exit %d\n%s", code, stderr)
		}
	})
}
