package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationWorkspaceLifecycle lives a workspace on the real service: up, up again (the
// same container), exec joins it (its exit code, the same container id in the join's bundle,
// the egress gateway in force), shell on the repository joins it too, status shows it with
// its usage, down brings the work back as a branch and records the gateway's log, a join
// after down is refused, up again starts on the same copy (the work is still there), rm
// without --yes off a terminal is refused and rm --yes removes the workspace but never the
// repository, its branch or the evidence.
func TestIntegrationWorkspaceLifecycle(t *testing.T) {
	e := podmantest.Need(t)
	srv := startEgressServers(t)
	w := newWorkspace(t, e, fmt.Sprintf(`  network:
    mode: gateway
    egress:
      allow: ["127.0.0.1:%d"]
`, srv.p))
	head := gitRepo(t, w)
	cli := workspaceCLI(t, e, w, "app")
	containerOf := func() string {
		t.Helper()
		out, err := e.Podman("ps", "-q", "--no-trunc", "--filter", "label="+agentmachine.LabelWorkspace+"=app")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, id := range strings.Fields(out) {
			if role, _ := e.Podman("inspect", "--format", `{{index .Config.Labels "dev.sourceos.agent-machine.role"}}`, id); strings.TrimSpace(role) == "" {
				ids = append(ids, id)
			}
		}
		if len(ids) != 1 {
			t.Fatalf("workspace containers running: %v", ids)
		}
		return ids[0]
	}

	code, _, stderr := cli("up", "--repo", w.repo, "--name", "app")
	if code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	up := verifyBundle(t, w, bundleFrom(t, stderr))
	id := containerOf()
	if up.Session.Workspace == nil || up.Session.Workspace.Action != "up" || up.Session.ContainerID != id || up.Checks.Inside != "passed" {
		t.Errorf("up's record: workspace %+v container %s checks %+v", up.Session.Workspace, up.Session.ContainerID, up.Checks)
	}
	if code, _, stderr = cli("up", "--repo", w.repo); code != 0 || !strings.Contains(stderr, "already up") || containerOf() != id {
		t.Errorf("second up: exit %d\n%s", code, stderr)
	}

	script := fmt.Sprintf(`echo work > wip.txt
wget -q -O- http://127.0.0.1:%d/allowed; echo " allowed=$?"
wget -q -O- http://127.0.0.1:%d/other 2>&1; echo " other=$?"
exit 7`, srv.p, srv.op)
	code, out, stderr := cli("exec", "--name", "app", "--", "sh", "-c", script)
	if code != 7 {
		t.Fatalf("exec: exit %d (want the command's 7)\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "REACHED") || !strings.Contains(out, " allowed=0") || strings.Contains(out, "/other") && strings.Contains(out, "REACHED 127.0.0.1:"+fmt.Sprint(srv.op)) || strings.Contains(out, " other=0") {
		t.Errorf("egress from a join:\n%s", out)
	}
	join := verifyBundle(t, w, bundleFrom(t, stderr))
	if join.Session.ContainerID != id || join.Session.Workspace == nil || join.Session.Workspace.Action != "join" || join.Session.Workspace.Up != up.Session.ID ||
		*join.Session.ExitCode != 7 || join.Checks.Inside != "passed" || join.Checks.Inspect != "as-planned" {
		t.Errorf("join's record: container %s workspace %+v exit %v checks %+v", join.Session.ContainerID, join.Session.Workspace, join.Session.ExitCode, join.Checks)
	}
	code, out, stderr = cli("shell", "--repo", w.repo, "--", "cat", "wip.txt")
	if code != 0 || strings.TrimSpace(out) != "work" || !strings.Contains(stderr, "joining workspace app") {
		t.Errorf("shell on the repository does not join the workspace: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr = cli("shell", "--repo", w.repo, "--allow-host", "example.com", "--", "true"); code != 2 || !strings.Contains(stderr, "up --fresh") {
		t.Errorf("a join with its own --allow-host: exit %d\n%s", code, stderr)
	}

	code, out, stderr = cli("status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	validateAgainst(t, "agent-machine-status.schema.json", []byte(out))
	var st agentmachine.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Workspaces) != 1 || st.Workspaces[0].State != "running" || st.Workspaces[0].Usage == nil || st.Workspaces[0].Usage.PIDs == 0 ||
		st.Workspaces[0].Gateway != "running" || !strings.HasPrefix(st.Workspaces[0].Branch, "agent/") {
		t.Errorf("status: %s", out)
	}
	for _, s := range st.Sessions {
		if strings.HasPrefix(s.Name, "sosctl-ws-app") {
			t.Errorf("status lists the workspace's container as a session: %+v", s)
		}
	}

	code, _, stderr = cli("down", "--name", "app")
	if code != 0 {
		t.Fatalf("down: exit %d\n%s", code, stderr)
	}
	down := verifyBundle(t, w, bundleFrom(t, stderr))
	if down.Egress == nil || down.Egress.Allowed < 1 || down.Egress.Denied < 1 || down.Session.Workspace.Action != "down" {
		t.Errorf("down's egress %+v", down.Egress)
	}
	branch := st.Workspaces[0].Branch
	if got, err := exec.Command("git", "-C", w.repo, "-c", "safe.directory=*", "show", branch+":wip.txt").Output(); err != nil || strings.TrimSpace(string(got)) != "work" {
		t.Errorf("the work is not on %s: %v %q", branch, err, got)
	}
	if out, _ := e.Podman("ps", "-aq", "--filter", "label="+agentmachine.LabelWorkspace+"=app"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after down: %s", out)
	}
	if code, _, stderr = cli("exec", "--name", "app", "--", "true"); code == 0 || !strings.Contains(stderr, "not running") {
		t.Errorf("exec after down: exit %d\n%s", code, stderr)
	}

	if code, _, stderr = cli("up", "--name", "app", "--repo", w.repo); code != 0 {
		t.Fatalf("up after down: exit %d\n%s", code, stderr)
	}
	if code, out, stderr = cli("exec", "--name", "app", "--", "cat", "wip.txt"); code != 0 || strings.TrimSpace(out) != "work" {
		t.Errorf("the workspace's files did not survive down/up: exit %d %q\n%s", code, out, stderr)
	}

	evidenceDir := filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
	bundles, _ := os.ReadDir(evidenceDir)
	if code, _, stderr = cli("rm", "app"); code != 2 || !strings.Contains(stderr, "needs --yes") || containerOf() == "" {
		t.Errorf("rm without --yes off a terminal: exit %d\n%s", code, stderr)
	}
	if code, out, stderr = cli("rm", "app", "--yes"); code != 0 {
		t.Fatalf("rm --yes: exit %d\n%s\n%s", code, out, stderr)
	}
	if out, _ := e.Podman("ps", "-aq", "--filter", "label="+agentmachine.LabelWorkspace+"=app"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after rm: %s", out)
	}
	if out, _ := e.Podman("volume", "ls", "-q", "--filter", "name="+up.Session.ID); strings.TrimSpace(out) != "" {
		t.Errorf("the gateway's volume is left after rm: %s", out)
	}
	after, _ := os.ReadDir(evidenceDir)
	if len(after) < len(bundles) {
		t.Errorf("rm removed evidence: %d bundles before, %d after", len(bundles), len(after))
	}
	for _, b := range bundles {
		if _, err := os.Stat(filepath.Join(evidenceDir, b.Name())); err != nil {
			t.Errorf("bundle %s is gone after rm", b.Name())
		}
	}
	if got, _ := exec.Command("git", "-C", w.repo, "-c", "safe.directory=*", "rev-parse", "HEAD").Output(); strings.TrimSpace(string(got)) != head {
		t.Errorf("the repository's HEAD moved: %s", got)
	}
	if err := exec.Command("git", "-C", w.repo, "-c", "safe.directory=*", "rev-parse", "--verify", branch).Run(); err != nil {
		t.Errorf("rm removed the workspace's branch %s: %v", branch, err)
	}
	if _, err := os.Stat(filepath.Join(w.repo, "wip.txt")); err == nil {
		t.Error("the workspace wrote the user's work tree")
	}
}

// TestIntegrationWorkspaceChangedBehindOurBack: a workspace whose container (or gateway) is
// changed after up is refused at the next join, and the command never runs: podman update of
// the live cgroup (which inspect does not show: the helper reads it from inside), privileged
// execs that remount the root writable, plant a file in it, or leave a root process, a
// gateway replaced by another container of its name, labels and volumes, the container
// stopped, or replaced. up --fresh makes a good one again each time.
func TestIntegrationWorkspaceChangedBehindOurBack(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "  network: {mode: gateway}\n")
	gitRepo(t, w)
	cli := workspaceCLI(t, e, w, "changed")
	if code, _, stderr := cli("up", "--repo", w.repo, "--name", "changed"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	marker := "/tmp/ran-" + fmt.Sprint(os.Getpid())
	for _, change := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"memory raised", []string{"update", "--memory", "1g", agentmachine.WorkspaceContainer("changed")}, "memory limit is 1073741824"},
		{"cpu raised", []string{"update", "--memory", "256m", "--cpus", "2", agentmachine.WorkspaceContainer("changed")}, "cpu limit is 2.00"},
	} {
		if out, err := e.Podman(change.args...); err != nil {
			t.Fatalf("%s: podman %v: %v\n%s", change.name, change.args, err, out)
		}
		code, _, stderr := cli("exec", "--name", "changed", "--", "touch", marker)
		if code != 3 || !strings.Contains(stderr, change.reason) || !strings.Contains(stderr, "up --fresh") {
			t.Errorf("%s: exit %d\n%s", change.name, code, stderr)
		}
		if out, _ := e.Podman("exec", agentmachine.WorkspaceContainer("changed"), "ls", marker); strings.Contains(out, marker) && !strings.Contains(out, "No such file") {
			t.Errorf("%s: the command ran in the changed container", change.name)
		}
	}
	// Privileged processes started beside the workspace: what they leave is refused.
	ws := agentmachine.WorkspaceContainer("changed")
	for _, change := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"root remounted writable", []string{"exec", "--privileged", "-u", "0", ws, "mount", "-o", "remount,rw", "/"}, "mount / is writable"},
		{"a file planted in the read-only root", []string{"exec", "--privileged", "-u", "0", ws, "sh", "-c",
			"mount -o remount,rw / && echo 'echo TROJAN' > /bin/trojan && chmod 755 /bin/trojan && mount -o remount,ro /"}, "A /bin/trojan"},
		{"a root process left running", []string{"exec", "-d", "-u", "0", ws, "sleep", "600"}, "as user 0"},
		{"the gateway replaced", nil, "egress gateway"},
	} {
		if code, _, stderr := cli("up", "--fresh", "--repo", w.repo, "--name", "changed"); code != 0 {
			t.Fatalf("%s: up --fresh: exit %d\n%s", change.name, code, stderr)
		}
		if change.args == nil {
			gw := ws + "-gateway"
			vols, _ := e.Podman("inspect", "--format", `{{range .Mounts}}{{.Name}}={{.Destination}} {{end}}`, gw)
			if _, err := e.Podman("rm", "-f", gw); err != nil {
				t.Fatal(err)
			}
			args := []string{"run", "-d", "--name", gw, "--label", agentmachine.LabelWorkspace + "=changed", "--label", agentmachine.LabelManaged + "=true"}
			for _, v := range strings.Fields(vols) {
				args = append(args, "-v", strings.Replace(v, "=", ":", 1))
			}
			change.args = append(args, podmantest.Image, "sleep", "600")
		}
		if out, err := e.Podman(change.args...); err != nil {
			t.Fatalf("%s: podman %v: %v\n%s", change.name, change.args, err, out)
		}
		code, _, stderr := cli("exec", "--name", "changed", "--", "touch", marker)
		if code == 0 || !strings.Contains(stderr, change.reason) {
			t.Errorf("%s: exit %d\n%s", change.name, code, stderr)
		}
		if out, _ := e.Podman("exec", ws, "ls", marker); strings.Contains(out, marker) && !strings.Contains(out, "No such file") {
			t.Errorf("%s: the command ran in the changed container", change.name)
		}
	}
	if code, _, stderr := cli("up", "--fresh", "--repo", w.repo, "--name", "changed"); code != 0 {
		t.Fatalf("up --fresh after the gateway's replacement: exit %d\n%s", code, stderr)
	}
	// Stopped behind our back: refused as not running.
	if out, err := e.Podman("stop", "-t", "1", agentmachine.WorkspaceContainer("changed")); err != nil {
		t.Fatalf("podman stop: %v\n%s", err, out)
	}
	if code, _, stderr := cli("exec", "--name", "changed", "--", "true"); code == 0 || !strings.Contains(stderr, "stopped outside sourceosctl") {
		t.Errorf("a stopped workspace: exit %d\n%s", code, stderr)
	}
	// Replaced by another container of the same name and labels: not the one up checked.
	if _, err := e.Podman("rm", "-f", agentmachine.WorkspaceContainer("changed")); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Podman("run", "-d", "--name", agentmachine.WorkspaceContainer("changed"), "--label", agentmachine.LabelWorkspace+"=changed",
		"--label", agentmachine.LabelManaged+"=true", podmantest.Image, "sleep", "600"); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	if code, _, stderr := cli("exec", "--name", "changed", "--", "true"); code == 0 || !strings.Contains(stderr, "is gone") {
		t.Errorf("a replaced container: exit %d\n%s", code, stderr)
	}
}

// workspaceCLI runs sourceosctl agent-machine with w's profile against the harness's service,
// returning the exit code, standard output and standard error; whatever runs under workspace
// name's label when the test ends is removed.
func workspaceCLI(t *testing.T, e *podmantest.Env, w *workspace, name string) func(args ...string) (int, string, string) {
	t.Cleanup(func() {
		if out, err := e.Podman("ps", "-aq", "--filter", "label="+agentmachine.LabelWorkspace+"="+name); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = e.Podman("rm", "-f", id)
			}
		}
	})
	return func(args ...string) (int, string, string) {
		t.Helper()
		f, out, errOut := sessionFactory(t, e, w, nil)
		code := run(t, f, append([]string{"--profile", w.profile, "am"}, args...)...)
		return code, out.String(), errOut.String()
	}
}

// TestIntegrationADirectWorkspacesNewGitIsNamed: a workspace on a directory that is not a
// repository works on it live; a .git made there through a join (with an fsmonitor the
// user's git would run) is named when the workspace goes down — not moved: the user works in
// that directory too, and may have made it.
func TestIntegrationADirectWorkspacesNewGitIsNamed(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	cli := workspaceCLI(t, e, w, "plain")
	if code, _, stderr := cli("up", "--repo", w.repo, "--name", "plain"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	if code, out, stderr := cli("exec", "--name", "plain", "--", "sh", "-c", "git init -q . && git config core.fsmonitor 'touch /tmp/x' && echo PLANTED"); code != 0 || !strings.Contains(out, "PLANTED") {
		t.Fatalf("exec: exit %d\n%s%s", code, out, stderr)
	}
	code, _, stderr := cli("down", "--name", "plain")
	if code != 0 || !strings.Contains(stderr, filepath.Join(w.repo, ".git")+" is new or replaced since the workspace came up") {
		t.Fatalf("down: exit %d, want the workspace's .git named\n%s", code, stderr)
	}
}
