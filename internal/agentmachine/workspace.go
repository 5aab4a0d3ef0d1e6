package agentmachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/textsafe"
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
		shown := name
		if len(shown) > 48 {
			shown = shown[:48] + "…"
		}
		return &InputError{Flag: "--name", Err: fmt.Errorf("%q is not a workspace name (lower-case letters, digits, . _ -; up to 40, starting with a letter or digit)", shown),
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
func planIdle(pl *Plan, f Facts) error {
	if pl.Helper == nil {
		return &MissingError{Component: "workspace", Detail: "a workspace's container runs sourceos-helper, which checks it from inside and then keeps it running, and this build or service has none",
			Fix: "build sourceosctl with make build; on another machine, use network: gateway (the helper is shipped with the gateway)"}
	}
	pl.Container.Command = []string{helperInside(*pl.Helper), idleCommand}
	if f.SFTP.Path != "" {
		ref := f.SFTP
		pl.SFTP = &ref
		pl.Container.Mounts = append(pl.Container.Mounts, container.Mount{Source: ref.Path, Target: container.SFTPTarget, ReadOnly: true})
	} else {
		pl.Notes = append(pl.Notes, "no SFTP for editors: its server is mounted from this host, and this service is on another machine (or this build has none)")
	}
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
	// RootChanges and SidecarChanges are what the server lists as written to each one's root
	// file system once up had checked it (the mount points it made): anything more is a
	// write a read-only root could not have taken.
	RootChanges    []string `json:"rootChanges,omitempty"`
	SidecarChanges []string `json:"sidecarChanges,omitempty"`
	// CopySession names the copy (repocopy.Load), kept from the first up until rm.
	CopySession string `json:"copySession,omitempty"`
	// GitGuard is the git metadata of the directories the workspace can write, at up (taken
	// when GitGuarded): a .git made or replaced there by the time of down is moved aside
	// (checkGitAfter). A workspace up before this was recorded has none, and is not checked.
	GitGuard   gitGuard  `json:"gitGuard,omitempty"`
	GitGuarded bool      `json:"gitGuarded,omitempty"`
	Created    time.Time `json:"created"`
	Up         time.Time `json:"up,omitempty"`
	Down       time.Time `json:"down,omitempty"`
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
	// IDE: up --ide; its image has code-server.
	IDE bool `json:"ide,omitempty"`
}

// sessionRequest is the request that re-plans the workspace.
func (w *Workspace) sessionRequest() SessionRequest {
	q := w.Request
	return SessionRequest{Tool: q.Tool, Repo: w.Repo, Secrets: q.Secrets, AllowHosts: q.AllowHosts, Auth: q.Auth,
		Branch: q.Branch, Direct: q.Direct, AllowProtected: q.AllowProtected, Workspace: w.Name, IDE: q.IDE}
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
	// Already: the workspace was up and as planned; nothing was started. Created: it was
	// made anew (first up, or --fresh), so its post-create commands are due.
	Already, Created bool
}

// Up makes the workspace req.Workspace run: creates it, starts it again after a down, or
// finds it running and as planned (then nothing happens). fresh brings a running one down
// first and starts from a new copy of the repository (the old work stays on its branch).
func (s *Session) Up(ctx context.Context, p *profile.Profile, req SessionRequest, fresh bool) (*UpResult, error) {
	name := req.Workspace
	repo, err := profile.ResolvePath(firstNonEmpty(req.Repo, p.Spec.Workspace.Repo), s.Host.Home, req.WorkDir)
	if err != nil || repo == "" {
		_, err = NewPlan(p, req, Facts{Home: s.Host.Home}) // the same error a session gives
		return nil, err
	}
	asked := WorkspaceRequest{Tool: req.Tool, Secrets: req.Secrets, AllowHosts: req.AllowHosts, Auth: req.Auth, Branch: req.Branch, Direct: req.Direct, IDE: req.IDE}
	for _, a := range req.AllowProtected {
		if r, err := profile.ResolvePath(a, s.Host.Home, req.WorkDir); err == nil {
			asked.AllowProtected = append(asked.AllowProtected, r)
		}
	}
	if fresh {
		// What the new workspace would be is checked before the old one is taken down.
		if _, err := s.Plan(ctx, p, req); err != nil {
			return nil, err
		}
	}
	w, found, unlock, err := s.lockedWorkspace(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if found && (w.Repo != repo || w.Profile != p.Metadata.Name) {
		return nil, &InputError{Flag: "--name", Err: fmt.Errorf("workspace %s is %s with profile %s", name, w.Repo, w.Profile),
			Fix: "name another with --name, or remove that one (sourceosctl agent-machine rm " + name + ")"}
	}
	if found && !fresh {
		if flag := w.Request.differs(asked); flag != "" {
			return nil, &InputError{Flag: flag, Err: fmt.Errorf("workspace %s was brought up with other settings (%s)", name, w.Request.describe()),
				Fix: "sourceosctl agent-machine up --fresh --name " + name + " with the new settings (the old work stays on its branch), or leave them out"}
		}
	}
	if found && w.Running() {
		if !fresh {
			if err := s.checkRunning(ctx, p, w); err != nil {
				return nil, err
			}
			return &UpResult{Result: &Result{Plan: w.Plan}, Workspace: w, Already: true}, nil
		}
		if err := s.downFirst(ctx, p, w); err != nil {
			return nil, fmt.Errorf("up --fresh: bring %s down first: %w", name, err)
		}
		if w, _, err = s.Dirs.LoadWorkspace(name); err != nil {
			return nil, err
		}
	}
	if found && fresh && w.CopySession != "" {
		if c, err := repocopy.Load(s.Dirs.State, w.CopySession); err == nil {
			if c.CollectError != "" {
				return nil, &HintError{Err: fmt.Errorf("up --fresh: workspace %s's last work could not be brought back (%s); it is still in %s", name, c.CollectError, c.Dir),
					Fix: "fix that, then sourceosctl agent-machine up --name " + name + " && sourceosctl agent-machine down --name " + name + "; or rm --force " + name + " to drop the work"}
			}
			if err := c.Remove(); err != nil {
				return nil, err
			}
		}
		w.CopySession = ""
		if err := s.Dirs.saveWorkspace(w); err != nil {
			return nil, err
		}
	}
	if !found || fresh {
		w = &Workspace{Name: name, Repo: repo, Profile: p.Metadata.Name, Created: s.Now().UTC(), Request: asked}
	}
	upReq := w.sessionRequest()
	kept := w.CopySession != ""
	if kept {
		c, err := repocopy.Load(s.Dirs.State, w.CopySession)
		if err != nil {
			return nil, fmt.Errorf("workspace %s: its copy: %w", name, err)
		}
		upReq.Copy, upReq.Branch = c, c.Branch
	}
	res, err := s.run(ctx, p, upReq, &workspaceRun{ws: w, action: actionUp})
	out := &UpResult{Result: res, Workspace: w, Created: !found || fresh}
	if err != nil {
		// A copy made for this up holds nothing of an agent's: it goes (a kept one stays).
		if !kept && res != nil && res.Plan != nil && res.Plan.Workspace.Copy != nil && w.ContainerID == "" {
			_ = res.Plan.Workspace.Copy.Remove()
		}
		return out, err
	}
	// Editor access: kept across down and up, so an editor's known host stays valid.
	if kerr := s.Dirs.WorkspaceSSH(name).ensureKeys(); kerr != nil {
		fmt.Fprintf(s.IO.ErrOut, "! workspace %s: its SSH keys: %v\n", name, kerr)
	}
	return out, nil
}

// LifecycleError is a workspace's post-create or post-start command that failed; the
// workspace stays up.
type LifecycleError struct {
	Workspace, Phase, Name string
	Err                    error
}

func (e *LifecycleError) Error() string {
	return fmt.Sprintf("workspace %s: %s command %s: %v; the workspace is up", e.Workspace, e.Phase, e.Name, e.Err)
}
func (e *LifecycleError) Unwrap() error { return e.Err }
func (e *LifecycleError) Hint() string {
	return "fix it and run it with: sourceosctl agent-machine exec --name " + e.Workspace + " -- COMMAND (or up --fresh to run post-create again)"
}

// Lifecycle runs the profile's post-create commands in a workspace up just made, then its
// post-start commands in any workspace up just started, each as a join — checked as every
// join is, recorded with its own evidence, in the container, never on the host. The first
// failure stops the rest.
func (s *Session) Lifecycle(ctx context.Context, p *profile.Profile, res *UpResult) error {
	if res.Already {
		return nil
	}
	phases := []struct {
		name string
		cmds []profile.Command
	}{{"post-create", p.Spec.Workspace.PostCreate}, {"post-start", p.Spec.Workspace.PostStart}}
	if !res.Created {
		phases = phases[1:]
	}
	// A repository's command gets no terminal and no input: it cannot prompt the user.
	quiet := *s
	quiet.IO.In, quiet.IO.InTTY = strings.NewReader(""), false
	for _, ph := range phases {
		for i, c := range ph.cmds {
			name := firstNonEmpty(c.Name, strconv.Itoa(i+1))
			fmt.Fprintf(s.IO.ErrOut, "Running %s command %s in workspace %s: %s\n", ph.name, textsafe.String(name), res.Workspace.Name, textsafe.String(ShellQuote(c.Command)))
			if _, err := quiet.Join(ctx, p, res.Workspace, SessionRequest{Tool: tool.Shell, Args: c.Command}); err != nil {
				return &LifecycleError{Workspace: res.Workspace.Name, Phase: ph.name, Name: name, Err: err}
			}
		}
	}
	return nil
}

// differs names the first setting of asked that is not the workspace's (a flag), or "".
func (q WorkspaceRequest) differs(asked WorkspaceRequest) string {
	eq := func(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }
	switch {
	case asked.Tool != q.Tool && !(asked.Tool == tool.Shell && q.Tool == ""):
		return "--tool"
	case !eq(asked.Secrets, q.Secrets):
		return "--secret"
	case !eq(asked.AllowHosts, q.AllowHosts):
		return "--allow-host"
	case !eq(asked.Auth, q.Auth):
		return "--auth"
	case asked.Branch != "" && asked.Branch != q.Branch:
		return "--branch"
	case asked.Direct != q.Direct:
		return "--direct"
	case !eq(asked.AllowProtected, q.AllowProtected):
		return "--allow-protected"
	case asked.IDE && !q.IDE: // up without --ide on a workspace with it is the same workspace
		return "--ide"
	}
	return ""
}

// describe says what the workspace was brought up with, for messages.
func (q WorkspaceRequest) describe() string {
	parts := []string{"tool " + firstNonEmpty(q.Tool, tool.Shell)}
	for _, f := range []struct {
		flag string
		v    []string
	}{{"--secret", q.Secrets}, {"--allow-host", q.AllowHosts}, {"--auth", q.Auth}, {"--allow-protected", q.AllowProtected}} {
		if len(f.v) > 0 {
			parts = append(parts, f.flag+" "+strings.Join(f.v, ","))
		}
	}
	if q.Direct {
		parts = append(parts, "--direct")
	}
	if q.IDE {
		parts = append(parts, "--ide")
	}
	return strings.Join(parts, ", ")
}

// checkRunning finds the workspace's container running and as planned.
func (s *Session) checkRunning(ctx context.Context, p *profile.Profile, w *Workspace) error {
	engine, _, err := s.Connect(ctx, MachineOf(p))
	if err != nil {
		return err
	}
	_, diffs, err := inspectWorkspace(ctx, engine, w, s.Dirs.knownExecs(w.Name))
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return changedBehindOurBack(w, diffs)
	}
	return nil
}

// inspectWorkspace finds the workspace's container and its gateway sidecar running and as up
// made them: each one's inspect compared with its spec, no exec session but the workspace's
// own joins run privileged or as another user, and nothing written to a root file system
// since up. It returns the container's inspect and every difference.
func inspectWorkspace(ctx context.Context, engine Engine, w *Workspace, known map[string]bool) ([]byte, []string, error) {
	list, err := engine.Containers(ctx, LabelWorkspace+"="+w.Name, true)
	if err != nil {
		return nil, nil, err
	}
	states := map[string]string{}
	for _, c := range list {
		states[c.ID] = c.State
	}
	for _, c := range []struct{ id, what string }{{w.ContainerID, "its container"}, {w.SidecarID, "its egress gateway"}} {
		switch state := states[c.id]; {
		case c.id == "" || state == "running":
		case state == "":
			return nil, nil, &WorkspaceDownError{Name: w.Name, Why: c.what + " " + short(c.id) + " is gone (removed outside sourceosctl)"}
		default:
			return nil, nil, &WorkspaceDownError{Name: w.Name, Why: c.what + " " + short(c.id) + " is " + state + " (stopped outside sourceosctl)"}
		}
	}
	// The container's and the gateway's checks, each a few calls to the service, side by side.
	var raw []byte
	var ours []string
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		observed, inspected, err := engine.Inspect(gctx, w.ContainerID)
		if err != nil {
			return err
		}
		raw, ours = inspected, container.Verify(w.Spec, w.Image, observed)
		return nil
	})
	var more []string
	g.Go(func() (err error) {
		more, err = afterUp(gctx, engine, w.ContainerID, w.Spec, w.RootChanges, known)
		return err
	})
	var verified, changed []string
	if sc := w.sidecar(); sc != nil {
		g.Go(func() error {
			observed, _, err := engine.Inspect(gctx, w.SidecarID)
			verified = container.Verify(sc.Container, w.Image, observed)
			return err
		})
		g.Go(func() (err error) {
			changed, err = afterUp(gctx, engine, w.SidecarID, sc.Container, w.SidecarChanges, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	diffs := append(ours, more...)
	for _, d := range append(verified, changed...) {
		diffs = append(diffs, "egress gateway: "+d)
	}
	return raw, diffs, nil
}

// afterUp is what changed in a container since up checked it: exec sessions that are not
// joins, and writes to its root file system beyond the baseline up recorded.
func afterUp(ctx context.Context, engine Engine, id string, spec container.Spec, baseline []string, known map[string]bool) ([]string, error) {
	execs, err := engine.ExecSessions(ctx, id, known)
	if err != nil {
		return nil, err
	}
	diffs := container.VerifyExecs(spec, execs)
	changes, err := engine.Changes(ctx, id)
	if err != nil {
		return nil, err
	}
	base := map[string]bool{}
	for _, c := range baseline {
		base[c] = true
	}
	var written []string
	for _, c := range changes {
		if !base[c] {
			written = append(written, c)
		}
	}
	if len(written) > 0 {
		if len(written) > 5 {
			written = append(written[:5], fmt.Sprintf("and %d more", len(written)-5))
		}
		diffs = append(diffs, "its read-only root file system was written since up: "+strings.Join(written, ", "))
	}
	return diffs, nil
}

// sidecar is the workspace's gateway sidecar, when it has one running.
func (w *Workspace) sidecar() *SidecarPlan {
	if w.SidecarID == "" || w.Plan == nil || w.Plan.Egress == nil {
		return nil
	}
	return w.Plan.Egress.Sidecar
}

// execsFile lists the exec sessions of the workspace's joins, one id per line, appended by
// each join: their settings were sourceosctl's (the container's user, never privileged).
func (d Dirs) execsFile(name string) string { return filepath.Join(d.WorkspacesDir(), name+".execs") }

func (d Dirs) knownExecs(name string) map[string]bool {
	known := map[string]bool{}
	b, _ := os.ReadFile(d.execsFile(name))
	for _, id := range strings.Fields(string(b)) {
		known[id] = true
	}
	return known
}

func (d Dirs) addExec(name, session string) error {
	f, err := os.OpenFile(d.execsFile(name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(session + "\n")
	return errors.Join(err, f.Close())
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

// NoVerdictError is a join whose command ran without the helper's verdict reaching
// sourceosctl: the check from inside is not confirmed (Code is the command's exit code).
type NoVerdictError struct {
	Workspace string
	Code      int
}

func (e *NoVerdictError) Error() string {
	return fmt.Sprintf("the helper gave no verdict in workspace %s (exit code %d)", e.Workspace, e.Code)
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
	join Joining
	// kept: up succeeded, so its containers and gateway outlive this process.
	kept bool
}

// Join runs a command in the running workspace w — req's tool and arguments, as a session
// would run them (exec and shell are the shell with arguments): the workspace is re-planned
// from the profile (a changed policy is refused), its container re-inspected and compared,
// and the helper checks it again from inside before the command starts. The command's exit
// code is the result's; the join leaves its own bundle.
func (s *Session) Join(ctx context.Context, p *profile.Profile, w *Workspace, req SessionRequest) (*Result, error) {
	j := Joining{In: s.IO.In, Out: s.IO.Out, ErrOut: s.IO.ErrOut, TTY: s.IO.InTTY && s.IO.OutTTY, Term: s.Getenv("TERM"), Project: req.Project}
	if j.TTY {
		// Podman 4.3 drops a size given before the exec runs: the terminal's is given after.
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		j.Resize = terminalSizes(sctx, s.IO.Out)
	}
	return s.JoinWith(ctx, p, w, req, j)
}

// Joining is how a join's command is attached: its streams (sourceosctl's own messages stay
// on the session's IO), whether it has a terminal, the terminal's type and its sizes.
type Joining struct {
	In          io.Reader
	Out, ErrOut io.Writer
	TTY         bool
	Term        string
	Resize      <-chan container.Size
	// Argv, when set, is the command itself (an SSH client's), instead of req's tool.
	Argv []string
	// Project is the project command Argv runs (test, serve), for the plan and the evidence.
	Project *evidence.Project
}

// JoinWith is Join with the command's streams and terminal given.
func (s *Session) JoinWith(ctx context.Context, p *profile.Profile, w *Workspace, req SessionRequest, j Joining) (*Result, error) {
	if !w.Running() {
		return &Result{}, &WorkspaceDownError{Name: w.Name, Why: "it is down"}
	}
	if req.Tool != tool.Shell && req.Tool != w.Request.Tool {
		return &Result{}, &InputError{Flag: "--tool", Err: fmt.Errorf("%s: workspace %s was brought up for %s", req.Tool, w.Name, w.Request.Tool),
			Fix: "sourceosctl agent-machine up --fresh --name " + w.Name + " --tool " + req.Tool + " (its work is kept on its branch)"}
	}
	argv, toolPlan, _ := commandFor(p, req)
	if j.Argv != nil {
		argv, toolPlan = j.Argv, ToolPlan{Name: tool.Shell, Binary: j.Argv[0]}
	}
	wr := &workspaceRun{ws: w, action: actionJoin, argv: argv, tool: toolPlan, join: j}
	return s.run(ctx, p, w.sessionRequest(), wr)
}

// Down stops the workspace, records its gateway's log and brings its copy's work back as the
// branch; the containers go, the copy and the tool's state stay for the next up.
func (s *Session) Down(ctx context.Context, p *profile.Profile, name string) (*Result, error) {
	w, found, unlock, err := s.lockedWorkspace(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !found {
		return nil, noWorkspace(name)
	}
	return s.down(ctx, p, w)
}

// downFirst brings the workspace down before up --fresh or rm replace or remove it. A gateway
// that could not account for its connections (gone, replaced) is said, and recorded in the
// down's evidence, but does not stop them: the work was brought back all the same.
func (s *Session) downFirst(ctx context.Context, p *profile.Profile, w *Workspace) error {
	_, err := s.down(ctx, p, w)
	var ge *GatewayError
	if errors.As(err, &ge) {
		fmt.Fprintf(s.IO.ErrOut, "! workspace %s: %v (recorded in the down's evidence)\n", w.Name, err)
		return nil
	}
	return err
}

// down is Down with the workspace's lock held.
func (s *Session) down(ctx context.Context, p *profile.Profile, w *Workspace) (*Result, error) {
	if !w.Running() {
		return &Result{Plan: w.Plan}, nil
	}
	return s.run(ctx, p, w.sessionRequest(), &workspaceRun{ws: w, action: actionDown})
}

func noWorkspace(name string) error {
	return &InputError{Flag: "--name", Err: fmt.Errorf("there is no workspace %s", name), Fix: "sourceosctl agent-machine status lists them; up makes one"}
}

// RemoveWorkspace brings the workspace down (its work reaches its branch), then removes its
// containers, gateway volume, copy, SSH keys and record. The repository (and the branch in
// it) and the evidence are never touched; nor is the tool's state, which sessions of the
// profile share. Work a down could not bring back is not dropped unless force says so.
func (s *Session) RemoveWorkspace(ctx context.Context, p *profile.Profile, name string, force bool) error {
	w, found, unlock, err := s.lockedWorkspace(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	if !found {
		return noWorkspace(name)
	}
	if w.Running() {
		if err := s.downFirst(ctx, p, w); err != nil && !force {
			return &HintError{Err: fmt.Errorf("bring %s down first (its work would be lost otherwise): %w", name, err),
				Fix: "fix that and run rm again, or rm --force " + name + " to drop what the copy holds"}
		}
	}
	var c *repocopy.Copy
	if w.CopySession != "" {
		if c, err = repocopy.Load(s.Dirs.State, w.CopySession); err != nil {
			c = nil
		}
	}
	if c != nil && c.CollectError != "" && !force {
		return &HintError{Err: fmt.Errorf("workspace %s holds work that could not be brought back (%s); it is in %s", name, c.CollectError, c.Dir),
			Fix: "fix that, then sourceosctl agent-machine up --name " + name + " && sourceosctl agent-machine down --name " + name + " brings it back; or rm --force " + name + " to drop it"}
	}
	engine, _, err := s.Connect(ctx, MachineOf(p))
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, removeLabelled(ctx, engine, name))
	if e := w.Plan.Egress; e != nil && e.Sidecar != nil {
		errs = append(errs, engine.RemoveVolume(ctx, e.Sidecar.Volume))
	}
	if c != nil {
		errs = append(errs, c.Remove())
	}
	errs = append(errs, os.RemoveAll(s.Dirs.WorkspaceSSH(name).Dir))
	_ = os.Remove(s.Dirs.IDELog(name))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_ = os.Remove(s.Dirs.execsFile(name))
	return os.Remove(s.Dirs.workspaceFile(name))
}

// removeLabelled removes every container under the workspace's label: its own, and any made
// in their place outside sourceosctl (which would hold its volume).
func removeLabelled(ctx context.Context, engine Engine, name string) error {
	list, err := engine.Containers(ctx, LabelWorkspace+"="+name, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range list {
		errs = append(errs, engine.Remove(ctx, c.ID))
	}
	return errors.Join(errs...)
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
	w.GitGuard, w.GitGuarded = r.plan.gitGuard, r.plan.gitGuard != nil
	// What the server wrote to the root file systems making them (mount points): the
	// baseline each join compares with.
	var err2 error
	if w.RootChanges, err2 = r.engine.Changes(ctx, w.ContainerID); err2 != nil {
		return nil, err2
	}
	if w.SidecarID != "" {
		if w.SidecarChanges, err2 = r.engine.Changes(ctx, w.SidecarID); err2 != nil {
			return nil, err2
		}
	}
	_ = os.Remove(r.Dirs.execsFile(w.Name)) // a new container: no join yet
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
	raw, diffs, err := inspectWorkspace(ctx, r.engine, w, r.Dirs.knownExecs(w.Name))
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
	j := r.ws.join
	env := map[string]string{}
	if j.TTY {
		env["TERM"] = firstNonEmpty(j.Term, "xterm-256color")
	}
	watch, out, errOut := watchVerdict(nonce, j.TTY, j.Out, j.ErrOut)
	r.event("exec: %s", strings.Join(r.ws.argv, " "))
	created := func(session string) {
		if err := r.Dirs.addExec(w.Name, session); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! workspace %s: record the join's exec session: %v\n", w.Name, err)
		}
	}
	code, err := r.engine.Exec(ctx, w.ContainerID, container.Exec{Command: argv, Env: env, User: w.Spec.User, WorkDir: w.Spec.WorkDir, TTY: j.TTY, Resize: j.Resize, Created: created},
		j.In, out, errOut)
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
		return nil, &NoVerdictError{Workspace: w.Name, Code: code}
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
		errs = append(errs, removeLabelled(ctx, r.engine, w.Name))
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
		if list, lerr := r.engine.Containers(ctx, LabelWorkspace+"="+w.Name, true); lerr == nil && !hasContainer(list, w.ContainerID) {
			// Removed outside sourceosctl: stopped all the same; its work is in the copy.
			r.event("workspace %s: its container %s was gone already", w.Name, short(w.ContainerID))
			fmt.Fprintf(r.IO.ErrOut, "! workspace %s: its container %s was removed outside sourceosctl; bringing its work back all the same\n", w.Name, short(w.ContainerID))
			return undo, nil
		}
		return undo, err
	}
	r.out.ExitCode = code
	r.event("workspace %s stopped (exit code %d)", w.Name, code)
	return undo, nil
}

func hasContainer(list []container.Summary, id string) bool {
	for _, c := range list {
		if c.ID == id {
			return true
		}
	}
	return false
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
				Reason: fmt.Sprintf("the profile now decides otherwise about %s than when the workspace was brought up (policy %s, was %s)",
					strings.Join(changedDecisions(w.Plan.Decision, now.Decision), ", "), now.PolicyHash, w.Plan.PolicyHash),
				Fix: "sourceosctl agent-machine up --fresh --name " + w.Name + " (its work is kept on its branch)",
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
		pl.Project = wr.join.Project
		pl.Notes = []string{"joined workspace " + w.Name + " (container " + short(w.ContainerID) + ", up in session " + w.Plan.SessionID + ")"}
	}
	return &pl, nil
}

// changedDecisions names the parts of the policy decision that differ (its JSON fields).
func changedDecisions(was, now *policy.Decision) []string {
	fields := func(d *policy.Decision) map[string]string {
		out := map[string]string{}
		var m map[string]json.RawMessage
		if b, err := json.Marshal(d); err == nil && json.Unmarshal(b, &m) == nil {
			for k, v := range m {
				out[k] = string(v)
			}
		}
		return out
	}
	a, b := fields(was), fields(now)
	var changed []string
	for k := range b {
		if a[k] != b[k] {
			changed = append(changed, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	if len(changed) == 0 {
		return []string{"its hash"}
	}
	return changed
}

// RulePolicyChanged refuses joining a workspace brought up under another policy.
const RulePolicyChanged = "workspace-policy-changed"

// collectWorkspace is collect for a workspace's runs: up and joins leave the copy and the
// gateway running (down records them); down brings the copy's work back and reads the
// gateway's log.
func (r *sessionRun) collectWorkspace(ctx context.Context) (func(), error) {
	w := r.ws.ws
	r.toolAbsent = "a workspace's " + r.ws.action + " does not measure the tool (sessions do)"
	if r.gitBeforeDone != nil {
		<-r.gitBeforeDone // when an earlier phase failed, nothing waited for it
	}
	r.gitAfter = r.gitBefore
	if r.gitAfter.Reader == "" {
		r.gitAfter = fingerprint.GitState{Reader: "git", Absent: "not read: the " + r.ws.action + " ended before the repository was read"}
	}
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
	if w.GitGuarded {
		r.checkGitAfter(w.GitGuard, writableRoots(r.plan), false)
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
		if c.Result.Kept != "" {
			fmt.Fprintf(r.IO.ErrOut, "! branch %s had moved since the workspace's last down (a commit of yours?): it was left as it was, and this work is on %s\n", c.Result.Kept, c.Branch)
		}
		id := c.Session
		fmt.Fprintf(r.IO.ErrOut, "The workspace's work is on branch %s of %s: %s, %s (its copy is kept for the next up).\n  review:  sourceosctl agent-machine diff %s\n  merge:   sourceosctl agent-machine merge %s [--squash]\n",
			c.Branch, c.Repo, plural(len(c.Result.Commits), "commit"), orDash(c.Result.Stat), id, id)
	}
}

// lockedWorkspace takes the workspace's lock and then reads its record (found is false when
// there is none): up, down and rm change a workspace only this way. The unlock is returned
// whenever err is nil.
func (s *Session) lockedWorkspace(ctx context.Context, name string) (w *Workspace, found bool, unlock func(), err error) {
	if err := CheckWorkspaceName(name); err != nil { // before its lock file is named after it
		return nil, false, nil, err
	}
	if unlock, err = s.lockWorkspace(ctx, name); err != nil {
		return nil, false, nil, err
	}
	if w, found, err = s.Dirs.LoadWorkspace(name); err != nil {
		unlock()
		return nil, false, nil, err
	}
	return w, found, unlock, nil
}

// lockWaitMax bounds waiting for another sourceosctl bringing the same workspace up or down.
const lockWaitMax = 5 * time.Minute

// lockWorkspace holds the workspace's lock while up, down or rm changes it: a second command
// waits (saying so) instead of racing it. The unlock is returned.
func (s *Session) lockWorkspace(ctx context.Context, name string) (func(), error) {
	if err := os.MkdirAll(s.Dirs.WorkspacesDir(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dirs.WorkspacesDir(), name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockWaitMax)
	for said := false; ; said = true {
		busy, err := tryLock(f)
		if err != nil || !busy {
			if err != nil {
				f.Close()
				return nil, err
			}
			return func() { f.Close() }, nil
		}
		if !said {
			fmt.Fprintf(s.IO.ErrOut, "waiting for another sourceosctl working on workspace %s …\n", name)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("workspace %s: another sourceosctl has held it for %s", name, lockWaitMax)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
