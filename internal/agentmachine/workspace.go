package agentmachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// A workspace is a session's container kept running (docs/design/workspaces.md): `up` lives
// a session's phases up to the start, with `sourceos-helper idle` as its tool once the helper
// has checked the container from inside; commands join it with podman exec, each checked
// again (the server's inspect compared with the plan, the helper from inside); `down`
// stops it, brings its copy's work back as the branch and records the egress gateway's log;
// the copy and the tool's state are kept for the next `up`.

// LabelWorkspace names the workspace a container belongs to.
const LabelWorkspace = "dev.sourceos.agent-machine.workspace"

// WorkspaceContainer is the name of a workspace's container.
func WorkspaceContainer(name string) string { return "sosctl-ws-" + name }

var workspaceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,39}$`)

// CheckWorkspaceName refuses a name that could not name a container, a file and an SSH host.
func CheckWorkspaceName(name string) error {
	if !workspaceNameRE.MatchString(name) || strings.HasSuffix(name, ".") {
		return &InputError{Flag: "--name", Err: fmt.Errorf("%q is not a workspace name (lower-case letters, digits, . _ -; up to 40, starting with a letter or digit)", name),
			Fix: "e.g. --name app"}
	}
	return nil
}

// DefaultWorkspaceName is the repository directory's name, made a valid workspace name.
func DefaultWorkspaceName(repo string) string {
	b := []byte(strings.ToLower(filepath.Base(repo)))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	name := strings.TrimLeft(strings.TrimRight(string(b), "."), "-_.")
	if len(name) > 40 {
		name = name[:40]
	}
	if name == "" {
		name = "workspace"
	}
	return name
}

// workspaceSecrets refuses a secret the container would hold: a workspace keeps running, and
// a Podman secret's value would live as long as it does. Injected secrets stay in the gateway.
func workspaceSecrets(pl *Plan) error {
	for _, s := range pl.Decision.Secrets {
		if len(s.Inject) == 0 {
			return &InputError{Flag: "--secret " + s.Name, Err: errors.New("would put its value in a workspace's container, which keeps running"),
				Fix: "give the secret inject: [{hosts: [...]}] in the profile (the gateway adds it to requests; the container holds a placeholder), or pass it to a session (run) instead"}
		}
	}
	return nil
}

// planIdle makes the workspace's tool the helper's idle: the container, checked from inside
// at its start, then waits for commands to join it.
func planIdle(pl *Plan) error {
	if pl.Helper == nil {
		return &MissingError{Component: "workspace", Detail: "a workspace's container runs sourceos-helper, which checks it from inside and then keeps it running, and this build or service has none",
			Fix: "build sourceosctl with make build; on another machine, use network: gateway (the helper is shipped with the gateway)"}
	}
	pl.Container.Command = []string{helperInside(*pl.Helper), idleCommand}
	pl.Notes = append(pl.Notes, fmt.Sprintf("workspace %s: its container %s stays running once checked (sourceos-helper idle); exec, shell and run join it, each checked again; down stops it and brings its work back as branch %s",
		pl.Workspace.Name, pl.Container.Name, branchOf(pl)))
	return nil
}

// idleCommand is the helper's subcommand that keeps a workspace's container running.
const idleCommand = "idle"

// helperInside is where the container finds the helper.
func helperInside(h HelperRef) string {
	if h.Volume != "" {
		return path.Join(container.ShippedTarget, shippedHelper)
	}
	return container.HelperTarget
}

func branchOf(pl *Plan) string {
	if c := pl.Workspace.Copy; c != nil {
		return c.Branch
	}
	return "(none: the workspace is not a copy)"
}

// Workspace is what sourceosctl keeps about a workspace, in the state directory.
type Workspace struct {
	Name    string `json:"name"`
	Repo    string `json:"repo"`
	Profile string `json:"profile"`
	// Request is what up was asked, for re-planning: a join is refused when the profile
	// now decides otherwise.
	Request WorkspaceRequest `json:"request"`
	// Plan is the plan of the last up; Spec the container as created from it (the helper's
	// command, placeholders); Image the image it was made from.
	Plan  *Plan           `json:"plan"`
	Spec  container.Spec  `json:"spec"`
	Image container.Image `json:"image"`
	// ImageEnv is the image's environment, which the container has too (Image leaves it out
	// of JSON).
	ImageEnv []string `json:"imageEnv"`
	// ContainerID and SidecarID are the running containers ("" once down).
	ContainerID string `json:"containerId,omitempty"`
	SidecarID   string `json:"sidecarId,omitempty"`
	// CopySession names the copy (repocopy.Load), kept from the first up until rm.
	CopySession string    `json:"copySession,omitempty"`
	Created     time.Time `json:"created"`
	Up          time.Time `json:"up,omitempty"`
	Down        time.Time `json:"down,omitempty"`
}

// WorkspaceRequest is the part of a session request a workspace keeps.
type WorkspaceRequest struct {
	Tool       string   `json:"tool"`
	Secrets    []string `json:"secrets,omitempty"`
	AllowHosts []string `json:"allowHosts,omitempty"`
	Auth       []string `json:"auth,omitempty"`
	Branch     string   `json:"branch,omitempty"`
	Direct     bool     `json:"direct,omitempty"`
	// AllowProtected are resolved paths.
	AllowProtected []string `json:"allowProtected,omitempty"`
}

// sessionRequest is the request that re-plans the workspace.
func (w *Workspace) sessionRequest() SessionRequest {
	q := w.Request
	return SessionRequest{Tool: q.Tool, Repo: w.Repo, Secrets: q.Secrets, AllowHosts: q.AllowHosts, Auth: q.Auth,
		Branch: q.Branch, Direct: q.Direct, AllowProtected: q.AllowProtected, Workspace: w.Name}
}

// Running reports whether the workspace's container was left running by its last up.
func (w *Workspace) Running() bool { return w.ContainerID != "" }

// WorkspacesDir holds the workspaces' records.
func (d Dirs) WorkspacesDir() string { return filepath.Join(d.State, "workspaces") }

func (d Dirs) workspaceFile(name string) string {
	return filepath.Join(d.WorkspacesDir(), name+".json")
}

// LoadWorkspace reads a workspace's record; found is false when there is none.
func (d Dirs) LoadWorkspace(name string) (w *Workspace, found bool, err error) {
	if err := CheckWorkspaceName(name); err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(d.workspaceFile(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	w = &Workspace{}
	if err := json.Unmarshal(b, w); err != nil {
		return nil, false, fmt.Errorf("%s: %w (remove it to forget the workspace)", d.workspaceFile(name), err)
	}
	if w.Name != name || w.Plan == nil {
		return nil, false, fmt.Errorf("%s is not workspace %s's record (remove it to forget the workspace)", d.workspaceFile(name), name)
	}
	w.Image.Env = w.ImageEnv
	return w, true, nil
}

// saveWorkspace writes the record whole or not at all.
func (d Dirs) saveWorkspace(w *Workspace) error {
	if err := os.MkdirAll(d.WorkspacesDir(), 0o700); err != nil {
		return err
	}
	w.ImageEnv = w.Image.Env
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(d.workspaceFile(w.Name), append(b, '\n'), 0o600, atomicfile.Options{})
}

// Workspaces lists every workspace's record, by name; unreadable ones are named in skipped.
func (d Dirs) Workspaces() (ws []*Workspace, skipped []string, err error) {
	entries, err := os.ReadDir(d.WorkspacesDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		w, found, err := d.LoadWorkspace(name)
		if err != nil || !found {
			skipped = append(skipped, fmt.Sprintf("%s: %v", e.Name(), err))
			continue
		}
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	return ws, skipped, nil
}

// FindWorkspace returns the workspace of a repository and profile, if there is one.
func (d Dirs) FindWorkspace(repo, profileName string) (*Workspace, error) {
	ws, _, err := d.Workspaces()
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if w.Repo == repo && w.Profile == profileName {
			return w, nil
		}
	}
	return nil, nil
}

// UpResult is what up did.
type UpResult struct {
	*Result
	Workspace *Workspace
	// Already: the workspace was up and as planned; nothing was started.
	Already bool
}

// Up makes the workspace req.Workspace run: creates it, starts it again after a down, or
// finds it running and as planned (then nothing happens). fresh brings a running one down
// first and starts from a new copy of the repository (the old work stays on its branch).
func (s *Session) Up(ctx context.Context, p *profile.Profile, req SessionRequest, fresh bool) (*UpResult, error) {
	name := req.Workspace
	w, found, err := s.Dirs.LoadWorkspace(name)
	if err != nil {
		return nil, err
	}
	repo, err := profile.ResolvePath(firstNonEmpty(req.Repo, p.Spec.Workspace.Repo), s.Host.Home, req.WorkDir)
	if err != nil || repo == "" {
		_, err = NewPlan(p, req, Facts{Home: s.Host.Home}) // the same error a session gives
		return nil, err
	}
	if found && (w.Repo != repo || w.Profile != p.Metadata.Name) {
		return nil, &InputError{Flag: "--name", Err: fmt.Errorf("workspace %s is %s with profile %s", name, w.Repo, w.Profile),
			Fix: "name another with --name, or remove that one (sourceosctl agent-machine rm " + name + ")"}
	}
	if found && w.Running() {
		if !fresh {
			if err := s.checkRunning(ctx, p, w); err != nil {
				return nil, err
			}
			return &UpResult{Result: &Result{Plan: w.Plan}, Workspace: w, Already: true}, nil
		}
		if _, err := s.Down(ctx, p, name); err != nil {
			return nil, fmt.Errorf("up --fresh: bring %s down first: %w", name, err)
		}
		if w, _, err = s.Dirs.LoadWorkspace(name); err != nil {
			return nil, err
		}
	}
	if found && fresh && w.CopySession != "" {
		if c, err := repocopy.Load(s.Dirs.State, w.CopySession); err == nil {
			if err := c.Remove(); err != nil {
				return nil, err
			}
		}
		w.CopySession = ""
	}
	if !found || fresh {
		w = &Workspace{Name: name, Repo: repo, Profile: p.Metadata.Name, Created: s.Now().UTC(), Request: WorkspaceRequest{
			Tool: req.Tool, Secrets: req.Secrets, AllowHosts: req.AllowHosts, Auth: req.Auth, Branch: req.Branch, Direct: req.Direct}}
		for _, a := range req.AllowProtected {
			if r, err := profile.ResolvePath(a, s.Host.Home, req.WorkDir); err == nil {
				w.Request.AllowProtected = append(w.Request.AllowProtected, r)
			}
		}
	}
	upReq := w.sessionRequest()
	if w.CopySession != "" {
		c, err := repocopy.Load(s.Dirs.State, w.CopySession)
		if err != nil {
			return nil, fmt.Errorf("workspace %s: its copy: %w", name, err)
		}
		upReq.Copy, upReq.Branch = c, c.Branch
	}
	res, err := s.run(ctx, p, upReq, &workspaceRun{ws: w, action: actionUp})
	out := &UpResult{Result: res, Workspace: w}
	return out, err
}

// checkRunning finds the workspace's container running and as planned.
func (s *Session) checkRunning(ctx context.Context, p *profile.Profile, w *Workspace) error {
	engine, _, err := s.Connect(ctx, MachineOf(p))
	if err != nil {
		return err
	}
	_, diffs, err := inspectWorkspace(ctx, engine, w)
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return changedBehindOurBack(w, diffs)
	}
	return nil
}

// inspectWorkspace finds the workspace's container running and compares it with its spec.
func inspectWorkspace(ctx context.Context, engine Engine, w *Workspace) ([]byte, []string, error) {
	list, err := engine.Containers(ctx, LabelWorkspace+"="+w.Name, true)
	if err != nil {
		return nil, nil, err
	}
	state := ""
	for _, c := range list {
		if c.ID == w.ContainerID {
			state = c.State
		}
	}
	switch state {
	case "running":
	case "":
		return nil, nil, &WorkspaceDownError{Name: w.Name, Why: "its container " + short(w.ContainerID) + " is gone (removed outside sourceosctl)"}
	default:
		return nil, nil, &WorkspaceDownError{Name: w.Name, Why: "its container " + short(w.ContainerID) + " is " + state + " (stopped outside sourceosctl)"}
	}
	observed, raw, err := engine.Inspect(ctx, w.ContainerID)
	if err != nil {
		return nil, nil, err
	}
	return raw, container.Verify(w.Spec, w.Image, observed), nil
}

// WorkspaceDownError: a command needs the workspace running, and it is not.
type WorkspaceDownError struct{ Name, Why string }

func (e *WorkspaceDownError) Error() string {
	return fmt.Sprintf("workspace %s is not running: %s", e.Name, e.Why)
}

// Hint says how to bring it back.
func (e *WorkspaceDownError) Hint() string {
	return "sourceosctl agent-machine down --name " + e.Name + " && sourceosctl agent-machine up --name " + e.Name
}

func changedBehindOurBack(w *Workspace, diffs []string) error {
	return &policy.RefusedError{Refusals: []policy.Refusal{{
		Subject: "workspace " + w.Name, Rule: RuleServerWeakened,
		Reason: "its container is not what up created and checked: " + strings.Join(diffs, "; "),
		Fix:    "sourceosctl agent-machine up --fresh --name " + w.Name + " (its work is kept on its branch)",
	}}}
}

// Workspace actions, as the evidence names them.
const (
	actionUp   = "up"
	actionJoin = "join"
	actionDown = "down"
)

// workspaceRun is what a session's run needs to know about the workspace it works on.
type workspaceRun struct {
	ws     *Workspace
	action string
	// argv is a join's command; tty whether it has a terminal.
	argv []string
	tool ToolPlan
	tty  bool
	// kept: up succeeded, so its containers and gateway outlive this process.
	kept bool
}

// Join runs a command in the running workspace w — req's tool and arguments, as a session
// would run them (exec and shell are the shell with arguments): the workspace is re-planned
// from the profile (a changed policy is refused), its container re-inspected and compared,
// and the helper checks it again from inside before the command starts. The command's exit
// code is the result's; the join leaves its own bundle.
func (s *Session) Join(ctx context.Context, p *profile.Profile, w *Workspace, req SessionRequest) (*Result, error) {
	if !w.Running() {
		return &Result{}, &WorkspaceDownError{Name: w.Name, Why: "it is down"}
	}
	if req.Tool != tool.Shell && req.Tool != w.Request.Tool {
		return &Result{}, &InputError{Flag: "--tool", Err: fmt.Errorf("%s: workspace %s was brought up for %s", req.Tool, w.Name, w.Request.Tool),
			Fix: "sourceosctl agent-machine up --fresh --name " + w.Name + " --tool " + req.Tool + " (its work is kept on its branch)"}
	}
	argv, toolPlan, _ := commandFor(p, req)
	wr := &workspaceRun{ws: w, action: actionJoin, argv: argv, tool: toolPlan, tty: s.IO.InTTY && s.IO.OutTTY}
	return s.run(ctx, p, w.sessionRequest(), wr)
}

// Down stops the workspace, records its gateway's log and brings its copy's work back as the
// branch; the containers go, the copy and the tool's state stay for the next up.
func (s *Session) Down(ctx context.Context, p *profile.Profile, name string) (*Result, error) {
	w, found, err := s.Dirs.LoadWorkspace(name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, noWorkspace(name)
	}
	if !w.Running() {
		return &Result{Plan: w.Plan}, nil
	}
	return s.run(ctx, p, w.sessionRequest(), &workspaceRun{ws: w, action: actionDown})
}

func noWorkspace(name string) error {
	return &InputError{Flag: "--name", Err: fmt.Errorf("there is no workspace %s", name), Fix: "sourceosctl agent-machine status lists them; up makes one"}
}

// RemoveWorkspace brings the workspace down (its work reaches its branch), then removes its
// containers, gateway volume, copy and record. The repository (and the branch in it) and the
// evidence are never touched; nor is the tool's state, which sessions of the profile share.
func (s *Session) RemoveWorkspace(ctx context.Context, p *profile.Profile, name string) error {
	w, found, err := s.Dirs.LoadWorkspace(name)
	if err != nil {
		return err
	}
	if !found {
		return noWorkspace(name)
	}
	if w.Running() {
		if _, err := s.Down(ctx, p, name); err != nil {
			return fmt.Errorf("bring %s down first (its work would be lost otherwise): %w", name, err)
		}
	}
	engine, _, err := s.Connect(ctx, MachineOf(p))
	if err != nil {
		return err
	}
	// Whatever is left under its label (a down that failed half-way).
	list, err := engine.Containers(ctx, LabelWorkspace+"="+name, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range list {
		errs = append(errs, engine.Remove(ctx, c.ID))
	}
	if e := w.Plan.Egress; e != nil && e.Sidecar != nil {
		errs = append(errs, engine.RemoveVolume(ctx, e.Sidecar.Volume))
	}
	if w.CopySession != "" {
		if c, err := repocopy.Load(s.Dirs.State, w.CopySession); err == nil {
			errs = append(errs, c.Remove())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(s.Dirs.workspaceFile(name))
}

// startIdle starts the workspace's container and waits for the helper's verdict: once it has
// checked the container from inside, the container idles and up is done.
func (r *sessionRun) startIdle(ctx context.Context) (func(), error) {
	if err := r.checkLinks(); err != nil {
		return nil, err
	}
	if err := r.checkCopy(); err != nil {
		return nil, err
	}
	<-r.gitBeforeDone
	res, err := r.box.startChecked(ctx, workspaceReady)
	if err != nil {
		r.event("start failed: %v", err)
		return nil, err
	}
	if len(res.Refused) > 0 {
		r.out.Checks.Inside, r.out.Checks.InsideDifferences = "refused", res.Refused
		r.event("refused from inside: %s", strings.Join(res.Refused, "; "))
		return nil, &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "container " + r.spec.Name, Rule: RuleServerWeakened,
			Reason: "checked from inside, the container is not what was planned: " + strings.Join(res.Refused, "; "),
			Fix:    weakenedFix + "; the container was removed",
		}}}
	}
	r.out.Checks.Inside, r.out.Ran = "passed", true
	r.event("checked from inside by sourceos-helper: as planned; workspace %s running", r.ws.ws.Name)
	w := r.ws.ws
	w.Plan, w.Spec, w.Image, w.ContainerID = r.plan, r.spec, r.out.Image, r.box.id
	w.SidecarID, w.Up = "", r.Now().UTC()
	if r.gw != nil && r.gw.box != nil {
		w.SidecarID = r.gw.box.id
	}
	if c := r.plan.Workspace.Copy; c != nil {
		w.CopySession = c.Session
	}
	if err := r.Dirs.saveWorkspace(w); err != nil {
		return nil, fmt.Errorf("record workspace %s: %w", w.Name, err)
	}
	r.ws.kept = true
	return nil, nil
}

// workspaceReady bounds waiting for the helper's verdict at up.
const workspaceReady = 60 * time.Second

// joinCheck finds the workspace's container running and as up created it; the join's record
// describes that container.
func (r *sessionRun) joinCheck(ctx context.Context) (func(), error) {
	w := r.ws.ws
	r.out.Image, r.out.ContainerID = w.Image, w.ContainerID
	raw, diffs, err := inspectWorkspace(ctx, r.engine, w)
	if err != nil {
		return nil, err
	}
	r.out.Inspect = raw
	r.out.Checks.Inspect, r.out.Checks.InspectDifferences = "as-planned", diffs
	if len(diffs) > 0 {
		r.out.Checks.Inspect = "differs"
		r.event("refused to join: the container changed since up: %s", strings.Join(diffs, "; "))
		return nil, changedBehindOurBack(w, diffs)
	}
	r.event("joined workspace %s: container %s inspected, as planned", w.Name, short(w.ContainerID))
	return nil, nil
}

// execJoin runs the join's command in the workspace through the helper, which checks the
// container from inside first (a millisecond), and keeps the command's exit code.
func (r *sessionRun) execJoin(ctx context.Context) (func(), error) {
	w := r.ws.ws
	nonce := newNonce()
	h := HelperRef{Digest: w.Plan.Helper.Digest, Volume: w.Plan.Helper.Volume, Path: w.Plan.Helper.Path}
	e := expectation(w.Spec, w.Image, nonce)
	argv := append([]string{helperInside(h), "check", e.Encode(), "--"}, r.ws.argv...)
	env := map[string]string{}
	if r.ws.tty {
		env["TERM"] = firstNonEmpty(r.Getenv("TERM"), "xterm-256color")
	}
	watch := &verdictWatch{nonce: nonce}
	out, errOut := r.IO.Out, r.IO.ErrOut
	if r.ws.tty {
		watch.w, out = out, watch
	} else {
		watch.w, errOut = errOut, watch
	}
	r.event("exec: %s", strings.Join(r.ws.argv, " "))
	code, err := r.engine.Exec(ctx, w.ContainerID, container.Exec{Command: argv, Env: env, User: w.Spec.User, WorkDir: w.Spec.WorkDir, TTY: r.ws.tty},
		r.IO.In, out, errOut)
	watch.flush()
	if err != nil {
		r.event("exec failed: %v", err)
		return nil, err
	}
	verdict, diffs := watch.result()
	switch {
	case verdict && diffs == nil:
		r.out.Checks.Inside, r.out.Ran = "passed", true
	case verdict:
		r.out.Checks.Inside, r.out.Checks.InsideDifferences = "refused", diffs
		r.event("refused from inside: %s", strings.Join(diffs, "; "))
		return nil, changedBehindOurBack(w, diffs)
	default:
		r.out.Checks.Inside = "not-reached"
		return nil, fmt.Errorf("the helper gave no verdict in workspace %s (exit code %d)", w.Name, code)
	}
	r.out.ExitCode = code
	r.event("exited with code %d", code)
	return nil, nil
}

// stopWorkspace stops the workspace's container and hands its gateway sidecar to collect,
// which stops it and reads its log; the containers are removed after the record.
func (r *sessionRun) stopWorkspace(ctx context.Context) (func(), error) {
	w := r.ws.ws
	r.out.Image, r.out.ContainerID, r.out.Ran = w.Image, w.ContainerID, true
	r.out.Checks.Inspect, r.out.Checks.Inside = "not-reached", "not-reached"
	r.spec = w.Spec
	if e := r.plan.Egress; e != nil && e.Sidecar != nil {
		r.denials = &denialLines{w: r.IO.ErrOut}
		r.gw = &sessionGateway{sidecar: e.Sidecar}
		if w.SidecarID != "" {
			r.gw.box = &containerRun{engine: r.engine, id: w.SidecarID}
		}
	}
	if c := r.plan.Workspace.Copy; c != nil {
		loaded, err := repocopy.Load(r.Dirs.State, w.CopySession)
		if err != nil {
			r.copyErr = err
		} else {
			loaded.Rewrite = true // the workspace's branch: each down brings its whole work again
			r.plan.Workspace.Copy = loaded
		}
	}
	undo := func() {
		var errs []error
		errs = append(errs, r.engine.Remove(ctx, w.ContainerID))
		if w.SidecarID != "" {
			errs = append(errs, r.engine.Remove(ctx, w.SidecarID))
		}
		if e := r.plan.Egress; e != nil && e.Sidecar != nil {
			errs = append(errs, r.engine.RemoveVolume(ctx, e.Sidecar.Volume))
		}
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
			return
		}
		w.ContainerID, w.SidecarID, w.Down = "", "", r.Now().UTC()
		if err := r.Dirs.saveWorkspace(w); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! record workspace %s: %v\n", w.Name, err)
		}
	}
	if err := r.engine.Stop(ctx, w.ContainerID, r.StopTimeout); err != nil {
		return undo, err
	}
	code, err := r.engine.Wait(ctx, w.ContainerID)
	if err != nil {
		return undo, err
	}
	r.out.ExitCode = code
	r.event("workspace %s stopped (exit code %d)", w.Name, code)
	return undo, nil
}

// workspaceAction is the evidence's account of the workspace a record belongs to.
func (r *sessionRun) workspaceAction() *evidence.WorkspaceAction {
	if r.ws == nil {
		return nil
	}
	up := r.plan.SessionID
	if r.ws.action != actionUp {
		up = r.ws.ws.Plan.SessionID
	}
	return &evidence.WorkspaceAction{Name: r.ws.ws.Name, Action: r.ws.action, Up: up}
}

// plan is a join's or a down's plan: the workspace's own, as its up made it, under a new
// session id (the record's). now is the profile's plan for the same request: a join is
// refused when the profile now decides otherwise; a down goes ahead whatever it decides.
func (wr *workspaceRun) plan(now *Plan, err error, at time.Time) (*Plan, error) {
	w := wr.ws
	if wr.action == actionJoin {
		if err != nil {
			return now, fmt.Errorf("workspace %s: the profile no longer allows it: %w", w.Name, err)
		}
		if now.PolicyHash != w.Plan.PolicyHash {
			return now, &policy.RefusedError{Refusals: []policy.Refusal{{
				Subject: "workspace " + w.Name, Rule: RulePolicyChanged,
				Reason: fmt.Sprintf("the profile's policy is %s now and the workspace runs under %s", now.PolicyHash, w.Plan.PolicyHash),
				Fix:    "sourceosctl agent-machine up --fresh --name " + w.Name + " (its work is kept on its branch)",
			}}}
		}
	}
	pl := *w.Plan
	pl.SessionID = newSessionID(at)
	if now != nil && err == nil {
		pl.SessionID = now.SessionID
	}
	pl.Container = w.Spec
	pl.Workspace.Copy = nil // a join never touches the copy; down loads it
	if wr.action == actionDown && w.Plan.Workspace.Copy != nil {
		c := *w.Plan.Workspace.Copy
		pl.Workspace.Copy = &c
	}
	if wr.action == actionJoin {
		pl.Container.Command = append([]string{}, wr.argv...)
		pl.Tool = wr.tool
		pl.Notes = []string{"joined workspace " + w.Name + " (container " + short(w.ContainerID) + ", up in session " + w.Plan.SessionID + ")"}
	}
	return &pl, nil
}

// RulePolicyChanged refuses joining a workspace brought up under another policy.
const RulePolicyChanged = "workspace-policy-changed"

// collectWorkspace is collect for a workspace's runs: up and joins leave the copy and the
// gateway running (down records them); down brings the copy's work back and reads the
// gateway's log.
func (r *sessionRun) collectWorkspace(ctx context.Context) (func(), error) {
	w := r.ws.ws
	r.toolAbsent = "a workspace's " + r.ws.action + " does not measure the tool (sessions do)"
	r.gitAfter = r.gitBefore
	if r.ws.action == actionDown {
		r.gitAfter = fingerprint.GitState{Reader: "git", Absent: "the workspace worked on its own copy, over the repository mounted read-only; its work is the branch in git.workspace.result"}
	}
	r.gitAfterDone = make(chan struct{})
	close(r.gitAfterDone)
	r.host = <-r.hostTools
	if r.ws.action != actionDown {
		if r.plan.Egress != nil {
			r.event("egress: the gateway of workspace %s keeps running; its down records every connection", w.Name)
		}
		return nil, nil
	}
	egressErr := r.collectEgress()
	if r.plan.Workspace.Copy != nil && r.copyErr == nil {
		r.collectCopy(ctx)
	}
	return nil, egressErr
}

// reportWorkspaceCopy tells the user where the workspace's work is, once down is recorded.
// The copy stays for the next up.
func (r *sessionRun) reportWorkspaceCopy() {
	c := r.plan.Workspace.Copy
	switch {
	case c == nil:
	case r.copyErr != nil:
		fmt.Fprintf(r.IO.ErrOut, "! workspace %s: its copy: %v\n", r.ws.ws.Name, r.copyErr)
	case r.copyCollectErr != nil:
		fmt.Fprintf(r.IO.ErrOut, "! %v\n", r.copyCollectErr)
	case c.Result == nil || !c.Result.Changed:
		fmt.Fprintf(r.IO.ErrOut, "Workspace %s changed nothing in %s: no branch.\n", r.ws.ws.Name, c.Repo)
	default:
		id := c.Session
		fmt.Fprintf(r.IO.ErrOut, "The workspace's work is on branch %s of %s: %s, %s (its copy is kept for the next up).\n  review:  sourceosctl agent-machine diff %s\n  merge:   sourceosctl agent-machine merge %s [--squash]\n",
			c.Branch, c.Repo, plural(len(c.Result.Commits), "commit"), orDash(c.Result.Stat), id, id)
	}
}
