package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// workspaceEnv is a session env on a local service whose build carries the programs a
// sidecar needs: a workspace's gateway is always a sidecar, even on this host.
func workspaceEnv(t *testing.T, extra string) (*sessionEnv, *fakeEngine) {
	log := sidecarLogOK
	e := &fakeEngine{present: true, image: pinned, verdict: true, sidecarOut: "ready /run/sourceos-egress/gateway.sock\n", sidecarLog: &log}
	se := newSessionEnv(t, e, nil, extra)
	se.session.Ship = func(arch string) (helper.Shipment, error) {
		return helper.Shipment{HelperDigest: "sha256:" + strings.Repeat("1", 64), GatewayDigest: "sha256:" + strings.Repeat("2", 64),
			Load: func() ([]byte, []byte, error) { return []byte("helper-" + arch), []byte("gateway-" + arch), nil }}, nil
	}
	return se, e
}

func (se *sessionEnv) up(t *testing.T, name string) *UpResult {
	t.Helper()
	res, err := se.session.Up(context.Background(), se.profile, SessionRequest{Tool: "shell", Repo: se.repo, Workspace: name}, false)
	if err != nil {
		t.Fatalf("up: %v\n%s", err, se.errOut)
	}
	// The service now lists its containers as running.
	w := res.Workspace
	se.engine.listed = []container.Summary{{ID: w.ContainerID, State: "running"}, {ID: w.SidecarID, State: "running"}}
	return res
}

func countCalls(e *fakeEngine, call string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if c == call {
			n++
		}
	}
	return n
}

// TestWorkspaceUpKeepsItRunning: up lives a session's phases up to the helper's verdict and
// leaves the container and its gateway sidecar running (nothing removed, nothing stopped);
// the container idles through the helper; the record and the bundle name the workspace; up
// again on a running, unchanged workspace creates nothing.
func TestWorkspaceUpKeepsItRunning(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	res := se.up(t, "app")
	w := res.Workspace
	if w.ContainerID != "sosctl-ws-app" || w.SidecarID != "sosctl-ws-app-gateway" {
		t.Fatalf("containers %q %q", w.ContainerID, w.SidecarID)
	}
	if n := countCalls(e, "remove") + countCalls(e, "stop"); n != 0 {
		t.Errorf("up removed or stopped %d containers: %s", n, e.sessionCalls())
	}
	cmd := w.Spec.Command
	if cmd[0] != "/run/sourceos-programs/sourceos-helper" || cmd[1] != "check" || strings.Join(cmd[len(cmd)-3:], " ") != "-- /run/sourceos-programs/sourceos-helper idle" {
		t.Errorf("workspace command %q", cmd)
	}
	if w.Spec.TTY || w.Spec.Stdin || w.Spec.Labels[LabelWorkspace] != "app" || w.Spec.Network != "none" {
		t.Errorf("spec tty %v stdin %v labels %v network %s", w.Spec.TTY, w.Spec.Stdin, w.Spec.Labels, w.Spec.Network)
	}
	saved, found, err := se.session.Dirs.LoadWorkspace("app")
	if err != nil || !found || saved.ContainerID != w.ContainerID || len(saved.Image.Env) != len(pinned.Env) {
		t.Fatalf("record: %+v %v %v", saved, found, err)
	}
	pred := se.verified(t, res.Result)
	if ws := pred.Session.Workspace; ws == nil || ws.Name != "app" || ws.Action != "up" || ws.Up != pred.Session.ID {
		t.Errorf("bundle's workspace %+v", pred.Session.Workspace)
	}
	if pred.Egress != nil || pred.Session.Outcome != "succeeded" || pred.Checks.Inside != "passed" || pred.Checks.Inspect != "as-planned" {
		t.Errorf("up's record: egress %+v outcome %s checks %+v", pred.Egress, pred.Session.Outcome, pred.Checks)
	}
	creates := countCalls(e, "create")
	again, err := se.session.Up(context.Background(), se.profile, SessionRequest{Tool: "shell", Repo: se.repo, Workspace: "app"}, false)
	if err != nil || !again.Already || countCalls(e, "create") != creates {
		t.Errorf("second up: already %v, creates %d → %d, err %v", again != nil && again.Already, creates, countCalls(e, "create"), err)
	}
}

// TestWorkspaceJoin: a join re-inspects the container, runs the command through the helper's
// check with podman exec, returns the command's exit code and leaves a bundle of its own
// naming the workspace and the same container.
func TestWorkspaceJoin(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	w := se.up(t, "app").Workspace
	e.exitCode = 7
	res, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"make", "test"}})
	var te *ToolExitError
	if !errors.As(err, &te) || te.Code != 7 {
		t.Fatalf("join: %v", err)
	}
	if countCalls(e, "exec") != 1 || countCalls(e, "create") != 2 {
		t.Errorf("calls: %s", e.sessionCalls())
	}
	pred := se.verified(t, res)
	if ws := pred.Session.Workspace; ws == nil || ws.Action != "join" || ws.Up != w.Plan.SessionID || pred.Session.ID == w.Plan.SessionID {
		t.Errorf("join's workspace %+v (session %s)", pred.Session.Workspace, pred.Session.ID)
	}
	if pred.Session.ContainerID != w.ContainerID || strings.Join(pred.Command, " ") != "make test" || *pred.Session.ExitCode != 7 {
		t.Errorf("join's record: container %s command %q exit %v", pred.Session.ContainerID, pred.Command, pred.Session.ExitCode)
	}
	if pred.Checks.Inspect != "as-planned" || pred.Checks.Inside != "passed" {
		t.Errorf("join's checks %+v", pred.Checks)
	}
}

// TestWorkspaceJoinRefused: a join is refused, before anything runs in the container, when
// the container is not what up created (each way the server could have changed it), when it
// is not running, and when the profile's policy changed since up.
func TestWorkspaceJoinRefused(t *testing.T) {
	weakenings := map[string]func(*container.Observed){
		"a capability":  func(o *container.Observed) { o.CapAdd = append(o.CapAdd, "SYS_ADMIN") },
		"a bind mount":  func(o *container.Observed) { o.Binds = append(o.Binds, container.Mount{Source: "/", Target: "/host"}) },
		"a network":     func(o *container.Observed) { o.Network = "bridge" },
		"privileged":    func(o *container.Observed) { o.Privileged = true },
		"a pids limit":  func(o *container.Observed) { o.Limits.Pids = 0 },
		"an env var":    func(o *container.Observed) { o.Env = append(o.Env, "LD_PRELOAD=/tmp/x.so") },
		"a device":      func(o *container.Observed) { o.Devices = append(o.Devices, "/dev/fuse:/dev/fuse") },
		"a writable fs": func(o *container.Observed) { o.ReadOnlyRoot = false },
	}
	for name, weaken := range weakenings {
		t.Run(name, func(t *testing.T) {
			se, e := workspaceEnv(t, gatewayNetwork)
			w := se.up(t, "app").Workspace
			e.weaken = weaken
			_, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"true"}})
			var refused *policy.RefusedError
			if !errors.As(err, &refused) || refused.Refusals[0].Rule != RuleServerWeakened || !strings.Contains(refused.Refusals[0].Fix, "up --fresh") {
				t.Fatalf("join of a changed container: %v", err)
			}
			if countCalls(e, "exec") != 0 {
				t.Error("the command ran in a changed container")
			}
		})
	}
	after := map[string]func(*fakeEngine){
		"a privileged exec": func(e *fakeEngine) {
			e.execSessions = []container.ExecSession{{ID: "x1", Privileged: true, Command: []string{"sh", "-c", "mount -o remount,rw /"}}}
		},
		"an exec as root": func(e *fakeEngine) { e.execSessions = []container.ExecSession{{ID: "x2", User: "0"}} },
		"a write to the root file system": func(e *fakeEngine) {
			e.changes = map[string][]string{"sosctl-ws-app": {"C /usr/local/bin", "A /usr/local/bin/git"}}
		},
		"the gateway weakened": func(e *fakeEngine) {
			e.weakenSidecar = func(o *container.Observed) { o.CapAdd = []string{"NET_ADMIN"} }
		},
		"the gateway written": func(e *fakeEngine) { e.changes = map[string][]string{"sosctl-ws-app-gateway": {"A /rules.json"}} },
	}
	for name, change := range after {
		t.Run(name, func(t *testing.T) {
			se, e := workspaceEnv(t, gatewayNetwork)
			w := se.up(t, "app").Workspace
			change(e)
			_, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"true"}})
			var refused *policy.RefusedError
			if !errors.As(err, &refused) || refused.Refusals[0].Rule != RuleServerWeakened || countCalls(e, "exec") != 0 {
				t.Fatalf("join after %s: %v", name, err)
			}
		})
	}
	t.Run("joins' own exec sessions", func(t *testing.T) {
		se, e := workspaceEnv(t, gatewayNetwork)
		w := se.up(t, "app").Workspace
		for i := 0; i < 2; i++ {
			if _, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"true"}}); err != nil {
				t.Fatalf("join %d: %v", i, err)
			}
			// The server now lists the join's session: known, so never refused.
			e.execSessions = append(e.execSessions, container.ExecSession{ID: fmt.Sprintf("exec-%d", len(e.calls)-1), User: w.Spec.User})
		}
		if known := se.session.Dirs.knownExecs("app"); len(known) != 2 {
			t.Errorf("known exec sessions %v", known)
		}
	})
	t.Run("the gateway gone", func(t *testing.T) {
		se, e := workspaceEnv(t, gatewayNetwork)
		w := se.up(t, "app").Workspace
		e.listed = e.listed[:1]
		_, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"true"}})
		var down *WorkspaceDownError
		if !errors.As(err, &down) || !strings.Contains(err.Error(), "egress gateway") || countCalls(e, "exec") != 0 {
			t.Fatalf("join without its gateway: %v", err)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		se, e := workspaceEnv(t, gatewayNetwork)
		w := se.up(t, "app").Workspace
		e.listed[0].State = "exited"
		_, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "shell", Args: []string{"true"}})
		var down *WorkspaceDownError
		if !errors.As(err, &down) || countCalls(e, "exec") != 0 || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("join of a stopped workspace: %v", err)
		}
	})
	t.Run("policy changed", func(t *testing.T) {
		se, e := workspaceEnv(t, gatewayNetwork)
		w := se.up(t, "app").Workspace
		changed, err := profile.LoadBytes("p.yaml", []byte(fmt.Sprintf(sessionProfile, gatewayNetwork+"      # and one more host\n")+""), profile.Env{Home: se.home, WorkDir: se.home})
		if err != nil {
			t.Fatal(err)
		}
		changed.Spec.Network.Egress.Allow = append(changed.Spec.Network.Egress.Allow, "evil.example.com")
		_, err = se.session.Join(context.Background(), changed, w, SessionRequest{Tool: "shell", Args: []string{"true"}})
		var refused *policy.RefusedError
		if !errors.As(err, &refused) || refused.Refusals[0].Rule != RulePolicyChanged || countCalls(e, "exec") != 0 {
			t.Fatalf("join under a changed policy: %v", err)
		}
		if reason := refused.Refusals[0].Reason; !strings.Contains(reason, "otherwise about egress") {
			t.Errorf("the refusal does not say what changed: %s", reason)
		}
	})
	t.Run("another tool", func(t *testing.T) {
		se, e := workspaceEnv(t, gatewayNetwork)
		w := se.up(t, "app").Workspace
		_, err := se.session.Join(context.Background(), se.profile, w, SessionRequest{Tool: "codex"})
		var in *InputError
		if !errors.As(err, &in) || countCalls(e, "exec") != 0 {
			t.Fatalf("run --tool codex in a shell workspace: %v", err)
		}
	})
}

// TestWorkspaceRefusesPlainSecrets: a workspace keeps running, so a secret whose value would
// sit in its container is refused with the way to inject it instead.
func TestWorkspaceRefusesPlainSecrets(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	_, err := se.session.Up(context.Background(), se.profile, SessionRequest{Tool: "codex", Repo: se.repo, Workspace: "app", Secrets: []string{"key"}}, false)
	var in *InputError
	if !errors.As(err, &in) || !strings.Contains(in.Fix, "inject") || countCalls(e, "create") != 0 {
		t.Fatalf("up with a plain secret: %v", err)
	}
}

// TestWorkspaceDown: down stops the container, stops the sidecar and reads its log into the
// down's bundle, removes both containers and the gateway's volume, and marks the record
// down; a join afterwards is refused as down.
func TestWorkspaceDown(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	w := se.up(t, "app").Workspace
	res, err := se.session.Down(context.Background(), se.profile, "app")
	if err != nil {
		t.Fatalf("down: %v\n%s", err, se.errOut)
	}
	pred := se.verified(t, res)
	if ws := pred.Session.Workspace; ws == nil || ws.Action != "down" || ws.Up != w.Plan.SessionID {
		t.Errorf("down's workspace %+v", pred.Session.Workspace)
	}
	if pred.Egress == nil || pred.Egress.Attempts != 2 || pred.Egress.Denied != 1 {
		t.Errorf("down's egress %+v", pred.Egress)
	}
	if countCalls(e, "remove") < 2 || countCalls(e, "export") != 1 {
		t.Errorf("calls %s", e.sessionCalls())
	}
	if _, ok := e.volumes[w.Plan.Egress.Sidecar.Volume]; ok {
		t.Error("the gateway's volume is left")
	}
	saved, _, err := se.session.Dirs.LoadWorkspace("app")
	if err != nil || saved.Running() || saved.Down.IsZero() {
		t.Fatalf("record after down: %+v %v", saved, err)
	}
	_, err = se.session.Join(context.Background(), se.profile, saved, SessionRequest{Tool: "shell", Args: []string{"true"}})
	var down *WorkspaceDownError
	if !errors.As(err, &down) {
		t.Errorf("join after down: %v", err)
	}
}

// TestWorkspaceStatus: status lists the workspace with its state, uptime and usage, and does
// not list its container as a session; stop leaves it alone.
func TestWorkspaceStatus(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	w := se.up(t, "app").Workspace
	for i := range e.listed {
		e.listed[i].Labels = map[string]string{LabelManaged: "true", LabelWorkspace: "app"}
		e.listed[i].Started = se.session.Now()
	}
	r, err := Status(context.Background(), StatusDeps{Connect: se.session.Connect, Now: se.session.Now, Dirs: se.session.Dirs}, se.profile)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Workspaces) != 1 || r.Workspaces[0].State != "running" || r.Workspaces[0].Usage == nil || r.Workspaces[0].Usage.PIDs != 3 ||
		r.Workspaces[0].Gateway != "running" || r.Workspaces[0].Uptime != "0s" || len(r.Sessions) != 0 {
		t.Fatalf("status: %+v", r)
	}
	var out strings.Builder
	if err := StopSessions(context.Background(), e, 0, false, &out, &out); err != nil || countCalls(e, "stop") != 0 {
		t.Errorf("stop touched the workspace %s: %v %s", w.Name, err, out.String())
	}
}

// TestWorkspaceNames: names are checked before any file is named after them; the default is
// the repository directory's name made valid.
func TestWorkspaceNames(t *testing.T) {
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "UPPER", "x.", strings.Repeat("a", 41), "-dash", "sp ace"} {
		if CheckWorkspaceName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for repo, want := range map[string]string{"/home/u/dev/App": "app", "/x/my repo!": "my-repo-", "/x/..": "workspace", "/x/.dot": "dot", "/": "workspace"} {
		got := DefaultWorkspaceName(repo)
		if got != want || CheckWorkspaceName(got) != nil {
			t.Errorf("DefaultWorkspaceName(%q) = %q, want %q", repo, got, want)
		}
	}
}

// TestWorkspaceUpWithoutItsImageRecordsAValidBundle: an up that fails at the image (a stack
// image not built yet) is recorded in a bundle that matches the schema — the repository's
// state named as not read — rather than in the last-resort directory.
func TestWorkspaceUpWithoutItsImageRecordsAValidBundle(t *testing.T) {
	se, e := workspaceEnv(t, gatewayNetwork)
	e.present = false
	se.profile.Spec.Image.Ref = "localhost/sourceos/agent-workspace:go-1.19"
	_, err := se.session.Up(context.Background(), se.profile, SessionRequest{Tool: "shell", Repo: se.repo, Workspace: "app"}, false)
	var missing *MissingError
	if !errors.As(err, &missing) || !strings.Contains(missing.Fix, "image build --stack go@1.19") {
		t.Fatalf("up: %v, want the missing image with its build command", err)
	}
	if strings.Contains(se.errOut.String(), "cannot write evidence") || !strings.Contains(se.errOut.String(), "evidence: ") {
		t.Errorf("the failed up's evidence:\n%s", se.errOut)
	}
}
