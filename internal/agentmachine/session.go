package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// Session runs governed sessions: Load's result → Decide → Plan → Execute → Record. Its
// fields are everything it uses; it reads no global state, so tests give it a fake engine, a
// fixed clock and temporary directories.
type Session struct {
	Connect  Connector
	Host     Host
	IO       IO
	Getenv   func(string) string
	Environ  func() []string
	Now      func() time.Time
	ReadFile func(string) ([]byte, error)
	Dirs     Dirs
	// TempDir is the system's temporary directory: the evidence's last resort.
	TempDir string
	Git     GitReader
	// GitBinary is the git CLI that makes and brings back a session's copy, run in the user's
	// repository as its owner ("" when git is not installed: sessions are then direct).
	GitBinary string
	// Runner asks host tools (found with LookPath) their versions, for the evidence.
	Runner   Runner
	LookPath func(string) (string, error)
	// Version is sourceosctl's version and commit, for the evidence.
	Version string
	// StopTimeout is how long a stopping container gets before it is killed.
	StopTimeout time.Duration
	Verbose     bool
	// Quiet leaves out the line naming each bundle (the SSH proxy: its standard error is the
	// editor's log). Bundles are written all the same.
	Quiet bool
	// Helper locates the in-container helper for a Linux architecture, writing it to disk when
	// install is true; nil when this build has none.
	Helper func(arch string, install bool) (HelperRef, error)
	// Collector installs the program that brings a copy's work back (cmd/sourceos-collect)
	// for a Linux architecture; nil when this build has none.
	Collector func(arch string) (HelperRef, error)
	// SFTP locates (and with install, writes) the SFTP server a workspace's container mounts
	// for editors (cmd/sourceos-sftp); nil when this build has none.
	SFTP func(arch string, install bool) (HelperRef, error)

	// Watcher keeps each repository's scan up to date between sessions (internal/repowatch);
	// nil: every copy reads its repository in full.
	Watcher RepoWatcher

	// Ship returns the programs a session ships to a service on another machine (the helper
	// and the egress gateway, for its architecture); nil when this build has none.
	Ship ShipFunc

	// listenGateway replaces the egress gateway's socket listener (tests).
	listenGateway func(path string, uid int) (net.Listener, error)
}

// RepoWatcher is a repository's watcher, seen from a session.
type RepoWatcher interface {
	// Scan is the repository's scan as its watcher keeps it, and the paths it read again
	// for it; an error when no watcher answers for repo.
	Scan(ctx context.Context, repo string) (repocopy.Scan, []string, error)
	// Start starts a watcher of repo in the background and returns at once.
	Start(repo string) error
}

// GitReader reads a repository's state; fingerprint.Git is the real one.
type GitReader interface {
	State(ctx context.Context, repo string) fingerprint.GitState
	Diff(ctx context.Context, repo string) []byte
}

// Result is what a session left behind.
type Result struct {
	Plan    *Plan
	Outcome *Outcome
	// Bundle is the evidence bundle's directory ("" when none was written).
	Bundle string
}

// Outcome is what happened in a session: everything evidence needs about the run.
type Outcome struct {
	ContainerID string          `json:"containerId,omitempty"`
	Image       container.Image `json:"image"`
	ExitCode    int             `json:"exitCode"`
	Started     time.Time       `json:"started"`
	Ended       time.Time       `json:"ended"`
	// Interrupted is set when a signal ended the session; Cause says which.
	Interrupted bool   `json:"interrupted"`
	Cause       string `json:"cause,omitempty"`
	// Inspect is `podman inspect` of the container as created.
	Inspect []byte `json:"-"`
	// Checks is how the container was checked before the tool started.
	Checks evidence.Checks `json:"checks"`
	// Ran is true once the container started: the exit code is the tool's.
	Ran bool `json:"ran"`
	// Events is the session log: what happened, when.
	Events []Event `json:"events"`
}

// Event is one line of the session log.
type Event struct {
	Time time.Time `json:"time"`
	What string    `json:"what"`
}

// Interrupt is the cancellation cause set when a signal arrives.
type Interrupt struct{ Signal string }

func (i *Interrupt) Error() string { return "interrupted by " + i.Signal }

// ToolExitError carries the exit code of a tool that ran and failed: the command exits with it.
type ToolExitError struct{ Code int }

func (e *ToolExitError) Error() string { return fmt.Sprintf("the tool exited with code %d", e.Code) }

// Rules the session itself can refuse by.
const (
	RuleImageDigest    = "image-digest-pinned"
	RuleServerWeakened = "server-weakened-spec"
)

// dryRunConnect bounds how long a dry run waits for the Podman service: it only asks facts.
const dryRunConnect = 3 * time.Second

// Plan returns what a session would do, asking the Podman service for facts when it answers
// within a few seconds and inferring them otherwise. It creates nothing: this is --dry-run,
// and it fails exactly where Run would fail before starting anything.
func (s *Session) Plan(ctx context.Context, p *profile.Profile, req SessionRequest) (*Plan, error) {
	engine, facts, connErr := s.facts(ctx, p, req, true)
	var bad interface{ BadInput() bool }
	if errors.As(connErr, &bad) && bad.BadInput() {
		return nil, connErr // a malformed or unknown connection fails whatever the service's state
	}
	pl, err := NewPlan(p, req, facts)
	if err != nil {
		return pl, err
	}
	if err := s.checkKey(); err != nil {
		return pl, err
	}
	if c := pl.Workspace.Copy; c != nil {
		if err := repocopy.Check(ctx, s.gitrun(), c.Repo, c.Branch); err != nil {
			return pl, copyError(err)
		}
	}
	// The real run walks the mounts for hard links beside its other phases; a dry run has
	// nothing else to do, and fails where the real run would.
	if refusals, err := policy.HardLinks(ctx, pl.Decision, pl.policyHost); err != nil || len(refusals) > 0 {
		return pl, errors.Join(err, refusedOrNil(refusals))
	}
	if connErr != nil || req.Export {
		engine = nil // the service did not answer, or is not where the plan goes: no image to check
	}
	return pl, s.checkAhead(ctx, engine, pl)
}

// checkKey fails a dry run as the real run fails on a signing key that is there but cannot
// be used (unreadable, not a key, a dangling link); a missing one is made by the real run.
// A TPM-held key is not opened by a dry run.
func (s *Session) checkKey() error {
	if _, found, err := s.Dirs.ReadTPMKeyRef(); found || err != nil {
		return nil
	}
	priv, _ := s.Dirs.SigningKeyPaths()
	if _, err := evidence.LoadKey(priv, []byte(s.Getenv("SOURCEOSCTL_KEY_PASSWORD"))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return keyError(priv, err)
	}
	return nil
}

// checkAhead fails a dry run where the real run's image and secrets phases would, changing
// nothing: with the service answering, a localhost/ image that is absent (built, never
// pulled) or an image other than the pinned digest — a published image that is absent would
// be pulled, and the plan says so; then each secret's source (a variable set, a file
// readable, a command's program found: never run) and, with --auth git, the host's identity.
func (s *Session) checkAhead(ctx context.Context, engine Engine, pl *Plan) error {
	if ref := pl.Image.Ref; engine != nil && ref != "" {
		img, found, err := engine.Image(ctx, ref)
		switch {
		case err != nil: // the real run asks again, and says
		case !found && IsLocalRef(ref):
			return missingLocalImage(pl, ref)
		case !found:
			pl.Notes = append(pl.Notes, "the image "+ref+" is not on this service: the session pulls it first")
		default:
			if err := checkDigest(pl, ref, img); err != nil {
				return err
			}
			if err := checkIDEImage(pl, img); err != nil {
				return err
			}
		}
	}
	r := &sessionRun{Session: s, plan: pl, out: &Outcome{}, checkOnly: true}
	for _, src := range pl.SecretSources {
		if _, err := r.secretValue(ctx, src); err != nil {
			return err
		}
	}
	if pl.Decision.GitIdentity {
		if _, err := r.readGitIdentity(ctx); err != nil {
			return err
		}
	}
	return nil
}

// gitrun is git as the session runs it in the user's repository: as its owner.
func (s *Session) gitrun() gitrun.Git { return gitrun.Git{Binary: s.GitBinary} }

// copyError makes a taken branch name the bad input it is (exit code 2).
func copyError(err error) error {
	if errors.Is(err, repocopy.ErrBranchExists) {
		return &InputError{Flag: "--branch", Err: err, Fix: "name another branch with --branch, or remove that one (sourceosctl agent-machine discard, or git branch -D)"}
	}
	return err
}

// refusedOrNil is the refusals as an error, or nil when there are none.
func refusedOrNil(refusals []policy.Refusal) error {
	if len(refusals) == 0 {
		return nil
	}
	return &policy.RefusedError{Refusals: refusals}
}

// Run plans the session and, when the policy allows it, lives it phase by phase (see
// lifecycle), then records it. A refused plan returns the plan and a *policy.RefusedError;
// a tool that failed returns *ToolExitError, a signal *Interrupt.
func (s *Session) Run(ctx context.Context, p *profile.Profile, req SessionRequest) (*Result, error) {
	return s.run(ctx, p, req, nil)
}

// run lives a session, or a workspace's up, join or down (ws), phase by phase.
func (s *Session) run(ctx context.Context, p *profile.Profile, req SessionRequest, ws *workspaceRun) (*Result, error) {
	engine, facts, err := s.facts(ctx, p, req, false)
	if err != nil {
		// Without the service, facts such as rootless-ness are guesses: a real run stops here.
		return &Result{}, err
	}
	plan, err := NewPlan(p, req, facts)
	if ws != nil && ws.action != actionUp {
		plan, err = ws.plan(plan, err, s.Now())
	}
	if err != nil {
		var refused *policy.RefusedError
		if plan != nil && errors.As(err, &refused) {
			_ = WriteRefusals(s.IO.ErrOut, plan)
		}
		return &Result{Plan: plan}, err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(s.IO.ErrOut, "! %s\n", w)
	}
	if s.Verbose {
		fmt.Fprintf(s.IO.ErrOut, "session %s: %s on %s (%s), policy %s\n", plan.SessionID, plan.Container.Name, plan.Connection.URI, plan.Connection.Source, plan.PolicyHash)
	}
	r := &sessionRun{Session: s, engine: engine, plan: plan, facts: facts, out: &Outcome{}, ws: ws}
	r.out.Checks = evidence.Checks{Inspect: "not-reached", Inside: "no-helper"}
	if plan.Helper != nil {
		r.out.Checks.Inside, r.out.Checks.Helper = "not-reached", plan.Helper.Digest
	}
	res := &Result{Plan: plan, Outcome: r.out}
	defer r.closeKey()
	runErr := r.live(ctx)
	if !r.prepared {
		r.cleanUp()
		return res, runErr
	}
	// The record is signed from what happened up to now; the clean-ups (removing the
	// container and the ephemeral secrets) run meanwhile, and their failures are reported.
	in := r.recordInput(runErr)
	cleaned := make(chan struct{})
	go func() { defer close(cleaned); r.cleanUp() }()
	bundle, recErr := r.record(in)
	<-cleaned
	res.Bundle = bundle
	switch {
	case ws == nil:
		r.reportCopy()
		r.reportVolume()
	case ws.action == actionDown:
		r.reportWorkspaceCopy()
	}
	switch {
	case runErr != nil || recErr != nil:
		return res, errors.Join(runErr, recErr)
	case r.copyCollectErr != nil && r.out.ExitCode == 0 && !r.out.Interrupted:
		return res, r.copyCollectErr
	case r.out.Interrupted:
		return res, &Interrupt{Signal: r.out.Cause}
	case r.out.ExitCode != 0:
		return res, &ToolExitError{Code: r.out.ExitCode}
	}
	return res, nil
}

// facts gathers what planning needs: the host, the repository's owner, and the Podman
// service's answers. When the service cannot be reached the facts are still good enough for a
// dry run (rootless inferred and marked assumed), and the error is returned.
func (s *Session) facts(ctx context.Context, p *profile.Profile, req SessionRequest, dryRun bool) (Engine, Facts, error) {
	h := s.Host
	f := Facts{
		OS: h.OS, Arch: h.Arch, Home: h.Home, UID: h.UID, GID: h.GID, RuntimeDir: h.RuntimeDir,
		Term: s.Getenv("TERM"), StdinTTY: s.IO.InTTY, StdoutTTY: s.IO.OutTTY, Now: s.Now(),
		Own: OwnState(s.Dirs, s.TempDir, h.UID, p), Workspace: req.Workspace != "",
	}
	if h.OS == "windows" {
		f.UID, f.GID = 1000, 1000 // the WSL machine's user; Windows has no uid
	}
	if repo := firstNonEmpty(req.Repo, p.Spec.Workspace.Repo); repo != "" {
		if r, err := profile.ResolvePath(repo, h.Home, req.WorkDir); err == nil {
			f.RepoUID, f.RepoGID = PathOwner(r)
			f.RepoMode = PathMode(r)
		}
	}
	cctx := ctx
	if dryRun {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, dryRunConnect)
		defer cancel()
	}
	engine, conn, err := s.Connect(cctx, MachineOf(p))
	f.Connection = conn
	if conn.URI == "" {
		f.Connection.Source = "none found"
	}
	// No connection found on Linux without a machine: the service, once started, is the
	// local one (a dry run before `start` plans for it; a real run stops at connecting).
	f.Local = h.OS == "linux" && (strings.HasPrefix(conn.URI, "unix://") || conn.URI == "") && MachineOf(p).Name == ""
	// Decided by the connection itself: an ssh:// or tcp:// endpoint that is not a Podman
	// machine of this host's (whose shared directories are this host's) is another machine.
	f.Remote = !conn.Machine && !strings.HasPrefix(conn.Source, "machine ") && (strings.HasPrefix(conn.URI, "ssh://") || strings.HasPrefix(conn.URI, "tcp://"))
	f.StateDir, f.GitCLI = s.Dirs.State, s.GitBinary != ""
	if f.GitCLI {
		f.Gitlinks = func(dir string) []string {
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gitTimeout)
			defer cancel()
			links, _ := repocopy.Gitlinks(gctx, s.gitrun().WithConfig("core.fsmonitor=false"), dir)
			return links
		}
	}
	if f.Local {
		if s.Helper != nil {
			if ref, herr := s.Helper(h.Arch, false); herr == nil {
				f.Helper = ref
			}
		}
		if f.Workspace && s.SFTP != nil {
			if ref, serr := s.SFTP(h.Arch, false); serr == nil {
				f.SFTP = ref
			}
		}
	}
	if err == nil {
		var svc container.Service
		if svc, err = engine.Service(cctx); err == nil {
			f.Rootless, f.ServerVersion, f.CgroupsVersion = svc.Rootless, svc.Version, svc.CgroupsVersion
			f.Shipped = s.shipped(f, svc.Arch)
			return engine, f, nil
		}
	}
	f.Shipped = s.shipped(f, "")
	// Unreachable: a socket under /run/podman is the rootful service; any other local one
	// belongs to its user; a remote one is assumed rootless, the common case for machines.
	f.Rootless = !strings.HasPrefix(conn.URI, "unix:///run/podman/") && (h.UID != 0 || !strings.HasPrefix(conn.URI, "unix://"))
	f.RootlessAssumed = true
	return nil, f, err
}

// shipped names the programs a session on another machine would ship there, for the
// service's architecture (the host's when the service did not say).
func (s *Session) shipped(f Facts, arch string) *ShippedRef {
	if (f.Local && !f.Workspace) || s.Ship == nil {
		return nil
	}
	arch = firstNonEmpty(arch, s.Host.Arch)
	sh, err := s.Ship(arch)
	if err != nil {
		return nil
	}
	return &ShippedRef{Arch: arch, HelperDigest: sh.HelperDigest, GatewayDigest: sh.GatewayDigest}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// closeKey releases a device-held signing key once the record is signed (a TPM keeps only a
// few keys loaded at once).
func (r *sessionRun) closeKey() {
	if r.key != nil && r.key.Close != nil {
		if err := r.key.Close(); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! release the TPM-held evidence key: %v\n", err)
		}
	}
}
