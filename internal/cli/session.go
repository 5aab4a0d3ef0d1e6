package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// sessionOptions are shared by shell and run: both start one governed session.
type sessionOptions struct {
	IO      *IOStreams
	Factory *Factory
	Globals *GlobalOptions

	Tool           string // "shell" for the shell command
	Repo           string
	Args           []string
	Secrets        []string
	AllowProtected []string
	DryRun         bool
	Output         string
	Keep           bool
}

// stopTimeout is how long a container gets to stop after Ctrl-C or SIGTERM; gitTimeout
// bounds reading the repository's state for evidence.
const (
	stopTimeout = 10 * time.Second
	gitTimeout  = 30 * time.Second
)

func addSessionFlags(cmd *cobra.Command, opts *sessionOptions) {
	fl := cmd.Flags()
	fl.StringVar(&opts.Repo, "repo", "", "repository `PATH` to mount as the workspace (default: the profile's spec.workspace.repo)")
	fl.StringArrayVar(&opts.Secrets, "secret", nil, "hand the declared secret `NAME` to the tool (repeatable; the profile must allow it)")
	fl.StringArrayVar(&opts.AllowProtected, "allow-protected", nil, "confirm mounting a protected `PATH` that the profile marks allowProtected (repeatable)")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the plan (mounts, user, limits, command) and change nothing")
	fl.BoolVar(&opts.Keep, "keep", false, "keep the container after the session instead of removing it")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON, outPodman)
}

func newShellCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &sessionOptions{IO: f.IO, Factory: f, Globals: g, Tool: "shell"}
	cmd := &cobra.Command{
		Use:   "shell [--repo PATH] [-- COMMAND [ARG...]]",
		Short: "Open a shell (or run a command) in a governed container on a repository",
		Long: `Open an interactive shell in a governed container with the repository mounted as the
workspace, or run COMMAND there with its output streamed and its exit code returned.

The container sees only the repository and the profile's allowlisted mounts, runs as your
uid with all capabilities dropped, no-new-privileges, a read-only root and no network
unless the profile grants one. Ctrl-C stops the container; it is removed afterwards.`,
		Example: `  sourceosctl agent-machine shell --repo ~/dev/app
  sourceosctl agent-machine shell --repo . -- git log -1
  sourceosctl agent-machine shell --repo . --dry-run -o podman`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			return runSession(cmd.Context(), opts)
		},
	}
	addSessionFlags(cmd, opts)
	return cmd
}

func newRunCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &sessionOptions{IO: f.IO, Factory: f, Globals: g}
	cmd := &cobra.Command{
		Use:   "run --tool NAME [--repo PATH] [-- ARG...]",
		Short: "Run an enabled tool (claude-code, codex or a custom tool) in a governed container",
		Long: `Run a tool that the profile enables, inside a governed container on the repository.
Built-in tools are claude-code (the 'claude' CLI) and codex; custom tools come from the
profile's spec.tools.custom. A tool receives a secret only when the profile declares it,
the tool lists it, and the command line repeats it with --secret NAME.

Both built-in tools bring their own Linux sandbox, which cannot start inside an
unprivileged container; the built-in definitions switch it off so that this container is
the boundary, and the plan says so.

The tool's exit code becomes sourceosctl's exit code.`,
		Example: `  sourceosctl agent-machine run --tool claude-code --repo ~/dev/app --secret anthropic-api-key
  sourceosctl agent-machine run --tool codex --repo . -- --version
  sourceosctl agent-machine run --tool claude-code --repo . --dry-run -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			if opts.Tool == "" {
				return usageErrorf("--tool is required: name an enabled tool such as claude-code or codex")
			}
			if opts.Tool == "shell" {
				return usageErrorf("use the shell command for a shell: sourceosctl agent-machine shell")
			}
			return runSession(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Tool, "tool", "", "tool `NAME` to run: claude-code, codex, or a custom tool from the profile")
	addSessionFlags(cmd, opts)
	return cmd
}

func runSession(ctx context.Context, opts *sessionOptions) error {
	if err := validateOutput(opts.Output, outTable, outJSON, outPodman); err != nil {
		return err
	}
	if opts.Output != outTable && !opts.DryRun {
		return usageErrorf("--output %s describes a plan: add --dry-run", opts.Output)
	}
	if opts.Keep && len(opts.Secrets) > 0 {
		return usageErrorf("--keep cannot be combined with --secret: a kept container would keep the secret's value readable through podman inspect")
	}
	f := opts.Factory
	prof, err := f.LoadProfile(opts.Globals.Profile)
	if err != nil {
		return err
	}
	client, facts, err := sessionFacts(ctx, f, opts, prof)
	if err != nil && !opts.DryRun {
		return err
	}
	wd, _ := f.WorkDir()
	plan, planErr := agentmachine.NewPlan(prof, agentmachine.SessionRequest{
		Tool: opts.Tool, Repo: opts.Repo, Args: opts.Args, Secrets: opts.Secrets,
		AllowProtected: opts.AllowProtected, Keep: opts.Keep, WorkDir: wd,
	}, facts)
	if opts.DryRun {
		return printPlan(opts, plan, planErr)
	}
	if planErr != nil {
		if plan != nil {
			_ = agentmachine.WriteRefusals(f.IO.ErrOut, plan)
		}
		return planErr
	}
	if opts.Globals.Verbose {
		fmt.Fprintf(f.IO.ErrOut, "session %s: %s on %s (%s), policy %s\n", plan.SessionID, plan.Container.Name, plan.Connection.URI, plan.Connection.Source, plan.PolicyHash)
	}
	rec, err := newRecorder(ctx, f, prof, plan, facts)
	if err != nil {
		return err
	}
	session := &agentmachine.Session{
		Engine: client, In: f.IO.In, Out: f.IO.Out, ErrOut: f.IO.ErrOut,
		Getenv: f.Getenv, ReadFile: os.ReadFile, Now: f.Now, StopTimeout: stopTimeout,
		ForceRemove: podman.ForceRemoveLocal(client.Endpoint()),
	}
	outcome, err := session.Run(ctx, plan)
	rec.probeTool(ctx, session, outcome)
	if recErr := rec.record(outcome, err); recErr != nil {
		return errors.Join(err, recErr)
	}
	if err != nil {
		return err
	}
	switch {
	case outcome.Interrupted:
		return &agentmachine.Interrupt{Signal: outcome.Cause}
	case outcome.ExitCode != 0:
		return &ExitError{Code: outcome.ExitCode}
	}
	return nil
}

// sessionFacts resolves and connects to Podman and gathers what planning needs. On failure
// it still returns facts good enough for a dry run (with rootless inferred), and the error.
func sessionFacts(ctx context.Context, f *Factory, opts *sessionOptions, prof *profile.Profile) (*podman.Client, agentmachine.Facts, error) {
	home, _ := f.Home()
	facts := agentmachine.Facts{
		OS: f.GOOS, Arch: f.GOARCH, Home: home, UID: f.UID, GID: f.GID,
		RuntimeDir: f.Getenv("XDG_RUNTIME_DIR"), Term: f.Getenv("TERM"),
		StdinTTY: f.IO.InTTY, StdoutTTY: f.IO.OutTTY, Now: f.Now(),
	}
	if facts.RuntimeDir == "" && f.GOOS == "linux" {
		facts.RuntimeDir = fmt.Sprintf("/run/user/%d", f.UID)
	}
	if f.GOOS == "windows" {
		facts.UID, facts.GID = 1000, 1000 // the WSL machine's user; Windows has no uid
	}
	if repo := opts.Repo; repo != "" || prof.Spec.Workspace.Repo != "" {
		if repo == "" {
			repo = prof.Spec.Workspace.Repo
		}
		wd, _ := f.WorkDir()
		if r, err := profile.ResolvePath(repo, home, wd); err == nil {
			facts.RepoUID, facts.RepoGID = agentmachine.PathOwner(r)
		}
	}
	ep, err := f.Resolver().Resolve(ctx, opts.Globals.Connection, machineName(prof))
	if err != nil {
		facts.Connection = agentmachine.Connection{Source: "none found"}
		facts.Rootless, facts.RootlessAssumed = f.UID != 0, true
		return nil, facts, err
	}
	facts.Connection = agentmachine.Connection{URI: ep.URI, Source: ep.Source}
	cctx := ctx
	if opts.DryRun {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	client, err := podman.Connect(cctx, ep)
	if err == nil {
		if rootless, cgroups, ok := podman.LocalFacts(ep); ok {
			facts.Rootless, facts.CgroupsVersion, facts.ServerVersion = rootless, cgroups, client.ServerVersion()
			return client, facts, nil
		}
		var info podman.ServerInfo
		if info, err = client.Info(cctx); err == nil {
			facts.Rootless, facts.ServerVersion, facts.CgroupsVersion = info.Rootless, info.Version, info.Cgroups
			return client, facts, nil
		}
	}
	facts.Rootless = !strings.HasPrefix(ep.URI, "unix:///run/podman/") && (f.UID != 0 || !strings.HasPrefix(ep.URI, "unix://"))
	facts.RootlessAssumed = true
	return nil, facts, err
}

func printPlan(opts *sessionOptions, plan *agentmachine.Plan, planErr error) error {
	f := opts.Factory
	var refused *policy.RefusedError
	if planErr != nil && (plan == nil || !errors.As(planErr, &refused)) {
		return planErr
	}
	switch {
	case opts.Output == outJSON:
		if err := writeJSON(f.IO.Out, plan); err != nil {
			return err
		}
	case planErr != nil:
		if err := agentmachine.WriteRefusals(f.IO.Out, plan); err != nil {
			return err
		}
	case opts.Output == outPodman:
		fmt.Fprintln(f.IO.Out, agentmachine.ShellQuote(agentmachine.PodmanArgs(plan)))
	default:
		if err := agentmachine.WriteTable(f.IO.Out, plan); err != nil {
			return err
		}
	}
	if planErr != nil {
		return planErr
	}
	fmt.Fprintf(f.IO.ErrOut, "dry run: nothing was created (session id and container name are new on each run)\n")
	return nil
}

// recorder writes a session's evidence. It is set up before the container starts, so that
// a session that could not be recorded (no usable signing key) never runs.
type recorder struct {
	ctx    context.Context
	f      *Factory
	plan   *agentmachine.Plan
	facts  agentmachine.Facts
	key    *evidence.Key
	dir    string
	git    string
	before fingerprint.GitState
	// hostTools are the host's tool versions, gathered while the session runs.
	hostTools chan hostToolVersions
	// tool and toolAbsent are the tool's measured version, or why there is none.
	tool       agentmachine.ToolFacts
	toolAbsent string
	toolCache  string
	// fallback receives the bundle when the evidence directory cannot.
	fallback string
}

// probeTool measures the tool's version and binary digest in the image, after the session
// so it never delays the tool. A failure is recorded as the reason, not raised.
func (r *recorder) probeTool(ctx context.Context, s *agentmachine.Session, out *agentmachine.Outcome) {
	switch {
	case r.plan.Tool.Name == "shell":
		r.toolAbsent = "a shell session runs the image's shell; no tool version applies"
		return
	case out == nil || out.Image.ID == "":
		r.toolAbsent = "the image was not available, so the tool could not be measured"
		return
	case ctx.Err() != nil:
		r.toolAbsent = "the session was interrupted before the tool could be measured"
		return
	}
	facts, err := s.ProbeTool(ctx, r.plan, out.Image.ID, r.toolCache)
	if err != nil {
		r.toolAbsent = "measuring the tool failed: " + firstLineOf(err)
		return
	}
	r.tool = facts
}

func newRecorder(ctx context.Context, f *Factory, prof *profile.Profile, plan *agentmachine.Plan, facts agentmachine.Facts) (*recorder, error) {
	dirs, err := f.Dirs()
	if err != nil {
		return nil, err
	}
	priv, pub := dirs.SigningKeyPaths()
	key, err := evidence.LoadOrCreateKey(priv, pub, []byte(f.Getenv("SOURCEOSCTL_KEY_PASSWORD")))
	if err != nil {
		return nil, &HintError{Err: fmt.Errorf("cannot sign this session's evidence, so it was not started: %w", err),
			Hint: "check " + priv + " (mode 0600, readable by you), or move it away to have a new key created"}
	}
	if key.Created {
		fmt.Fprintf(f.IO.ErrOut, "Created the evidence signing key %s (public key: %s)\n", priv, pub)
	}
	dir := prof.Spec.Evidence.Dir
	if dir == "" {
		dir = dirs.EvidenceDir()
	}
	git, _ := exec.LookPath("git")
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gitTimeout)
	defer cancel()
	// A profile's own evidence dir falls back to the default one; the default, to a private
	// directory in the system's temporary directory.
	fallback := dirs.EvidenceDir()
	if fallback == dir {
		fallback = filepath.Join(os.TempDir(), fmt.Sprintf("sourceosctl-evidence-%d", f.UID))
	}
	r := &recorder{ctx: ctx, f: f, plan: plan, facts: facts, key: key, dir: dir, git: git, toolCache: dirs.ToolCache(),
		fallback:  fallback,
		hostTools: make(chan hostToolVersions, 1)}
	go func() { r.hostTools <- gatherHostTools(context.WithoutCancel(ctx), f, git) }()
	r.before = fingerprint.ReadGit(gctx, plan.Repo, git)
	return r, nil
}

// privateDir makes sure dir is a directory of ours that nobody else can read or replace: a
// fallback in a shared temporary directory could have been planted by another user.
func privateDir(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	owner, _ := agentmachine.PathOwner(dir)
	if !st.IsDir() || st.Mode().Perm()&0o077 != 0 || (uid >= 0 && owner != uid) {
		return fmt.Errorf("%s is not a private directory of yours (mode %v, owner %d): refusing to write evidence there", dir, st.Mode(), owner)
	}
	return nil
}

type hostToolVersions struct{ git, podmanClient, kernel string }

// gatherHostTools asks each tool its version, concurrently with the session.
func gatherHostTools(ctx context.Context, f *Factory, git string) hostToolVersions {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	version := func(name string, args ...string) string {
		if name == "" {
			return ""
		}
		out, err := f.Runner.Run(ctx, name, args...)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	return hostToolVersions{git: version(git, "--version"), podmanClient: version("podman", "--version"), kernel: version("uname", "-r")}
}

func (r *recorder) record(out *agentmachine.Outcome, runErr error) error {
	// A Ctrl-C'd session is recorded too; a hung git cannot hold the record back.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), gitTimeout)
	defer cancel()
	after := fingerprint.ReadGit(ctx, r.plan.Repo, r.git)
	var diff []byte
	if after.Dirty {
		diff, _ = fingerprint.Diff(ctx, r.plan.Repo, r.git)
	}
	tools := <-r.hostTools
	in := agentmachine.RecordInput{
		Plan: r.plan, Outcome: out, RunErr: runErr, GitBefore: r.before, GitAfter: after, Diff: diff,
		Host: evidence.Host{OS: r.f.GOOS, Arch: r.f.GOARCH, Sourceosctl: r.f.Build.Version + " (" + r.f.Build.Commit + ")",
			PodmanServer: r.facts.ServerVersion, Rootless: r.facts.Rootless, Connection: r.plan.Connection.URI,
			GitVersion: tools.git, PodmanClient: tools.podmanClient, Kernel: tools.kernel, CgroupVersion: r.facts.CgroupsVersion},
		Environ: r.f.Environ(), Key: r.key, Dir: r.dir, Tool: r.tool, ToolAbsent: r.toolAbsent,
	}
	dir, err := agentmachine.Record(in)
	if err != nil && r.fallback != "" && r.fallback != r.dir {
		// The configured directory is unusable (read-only, full, gone): keep the record
		// anyway, somewhere the user can find it, and say so.
		fmt.Fprintf(r.f.IO.ErrOut, "! cannot write evidence to %s (%v); writing it to %s instead\n", r.dir, cause.Root(err), r.fallback)
		in.Dir = r.fallback
		if err = privateDir(r.fallback, r.f.UID); err == nil {
			dir, err = agentmachine.Record(in)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %v", agentmachine.ErrNoEvidence, err)
	}
	fmt.Fprintf(r.f.IO.ErrOut, "evidence: %s\n", dir)
	return nil
}
