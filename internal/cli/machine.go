package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	machinepkg "github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// usesMachine reports whether the profile's sessions run in a Podman machine.
func usesMachine(goos string, p *profile.Profile) bool {
	return goos == "darwin" || goos == "windows" || agentmachine.MachineOf(p).Name != ""
}

type startOptions struct {
	IO          *IOStreams
	GOOS        string
	LoadProfile func(string) (*profile.Profile, error)
	Native      func() (agentmachine.StartDeps, error)
	Machines    agentmachine.MachineOps
	Dirs        func() (agentmachine.Dirs, error)
	// Ping connects to the API the command resolves (for a machine: once it runs).
	Ping func(ctx context.Context, m machinepkg.Ref) (podman.Endpoint, podman.ServerInfo, error)

	Profile string
	DryRun  bool
	Force   bool
	Output  string
}

func newStartCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &startOptions{IO: f.IO, GOOS: f.GOOS, LoadProfile: f.LoadProfile, Machines: f.Machines(), Dirs: f.Dirs,
		Native: func() (agentmachine.StartDeps, error) { return f.startDeps(g) },
		Ping: func(ctx context.Context, m machinepkg.Ref) (podman.Endpoint, podman.ServerInfo, error) {
			return f.ping(ctx, g.Connection, m)
		}}
	cmd := &cobra.Command{
		Use:   "start [--dry-run]",
		Short: "Start the Podman machine or API service the profile needs",
		Long: `Make sure Podman can run sessions.

Linux (no machine): an API that already answers is left alone; otherwise the systemd
podman.socket unit is started where systemd manages your session, or else
'podman system service' is started in the background with its log in the state directory
($XDG_STATE_HOME/sourceos/agent-machine/podman-service.log). The socket is the one Podman
itself uses: in $XDG_RUNTIME_DIR, or without it /run/user/UID or $TMPDIR/podman-run-UID (see
doctor). An endpoint set explicitly (--connection, CONTAINER_HOST) is never replaced by a
local service.

macOS and Windows: the profile's Podman machine is started; one is never created: if it is
absent, the exact 'podman machine init' command is printed.`,
		Example: `  sourceosctl agent-machine start
  sourceosctl agent-machine start --dry-run`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
				return err
			}
			return runStart(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be started and change nothing")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop another running machine that this tool did not start")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

// startDeps are what starting the native Linux service needs.
func (f *Factory) startDeps(g *GlobalOptions) (agentmachine.StartDeps, error) {
	dirs, err := f.Dirs()
	if err != nil {
		return agentmachine.StartDeps{}, err
	}
	runtime, runtimeErr := podman.ResolveRuntimeDir(f.Resolver().RuntimeEnv())
	return agentmachine.StartDeps{
		UID: f.UID, RuntimeDir: runtime.Path, RuntimeDirErr: runtimeErr, Dirs: dirs, Stat: f.Stat, ReadFile: f.ReadFile,
		Resolve: func(ctx context.Context) (string, string, error) {
			ep, err := f.Resolver().Resolve(ctx, g.Connection, machinepkg.Ref{})
			return ep.URI, ep.Source, err
		},
		Ping: func(ctx context.Context, uri string) (agentmachine.APIStatus, error) {
			return apiStatus(ctx, f, podman.Endpoint{URI: uri, Source: "local socket"})
		},
		StartUnit: func(ctx context.Context, user bool) error {
			return podman.StartSocketUnit(ctx, f.Runner, user)
		},
		Spawn: podman.SpawnService, ServiceCommand: podman.ServiceCommand,
		ErrOut: f.IO.ErrOut, Wait: 30 * time.Second,
	}, nil
}

// apiStatus asks the service at ep for its status, within a few seconds.
func apiStatus(ctx context.Context, f *Factory, ep podman.Endpoint) (agentmachine.APIStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := podmanEngine(cctx, ep) // not memoised: start polls a service that is coming up
	if err != nil {
		return agentmachine.APIStatus{}, err
	}
	info, err := e.Info(cctx)
	if err != nil {
		return agentmachine.APIStatus{}, err
	}
	return agentmachine.APIStatus{URI: ep.URI, Source: ep.Source, ServerVersion: info.Version, Rootless: info.Rootless, CgroupsVersion: info.Cgroups}, nil
}

// ping resolves and connects as a session would, and asks the service for its version.
func (f *Factory) ping(ctx context.Context, connection string, m machinepkg.Ref) (podman.Endpoint, podman.ServerInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, ep, err := f.Connect(cctx, connection, m)
	if err != nil {
		return ep, podman.ServerInfo{}, err
	}
	info, err := e.Info(cctx)
	return ep, info, err
}

func runStart(ctx context.Context, opts *startOptions) error {
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	if usesMachine(opts.GOOS, prof) {
		return runStartMachine(ctx, opts, prof)
	}
	deps, err := opts.Native()
	if err != nil {
		return err
	}
	res, err := agentmachine.StartNative(ctx, deps, opts.DryRun)
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(opts.IO.Out, res)
	}
	out := opts.IO.Out
	switch {
	case res.Action == "already-running":
		fmt.Fprintf(out, "✓ The Podman API is already up at %s (%s), server %s\n", res.URI, res.Source, res.API.ServerVersion)
	case opts.DryRun:
		fmt.Fprintf(out, "dry run: would run %s\n", agentmachine.ShellQuote(res.Command))
		if res.Log != "" {
			fmt.Fprintf(out, "  in the background, logging to %s; the API would answer at %s\n", res.Log, res.URI)
		}
	default:
		fmt.Fprintf(out, "✓ Started the Podman API at %s (%s), server %s\n", res.URI, strings.Join(res.Command, " "), res.API.ServerVersion)
		if res.Log != "" {
			fmt.Fprintf(out, "  pid %d, log %s\n", res.PID, res.Log)
		}
	}
	return nil
}

// runStartMachine starts the profile's Podman machine, then makes sure its API answers.
func runStartMachine(ctx context.Context, opts *startOptions, prof *profile.Profile) error {
	if prof.Spec.Machine == nil {
		return &agentmachine.InputError{Flag: "--profile", Err: fmt.Errorf("profile %s names no Podman machine, which %s needs", prof.Metadata.Name, opts.GOOS),
			Fix: "add spec.machine (see profiles/examples/macos-podman.yaml), or: sourceosctl agent-machine init --repo PATH"}
	}
	dirs, err := opts.Dirs()
	if err != nil {
		return err
	}
	res, err := agentmachine.StartMachine(ctx, opts.Machines, agentmachine.MachineRequest{
		Profile: prof, GOOS: opts.GOOS, Repo: prof.Spec.Workspace.Repo, DryRun: opts.DryRun, Force: opts.Force, Ledger: dirs.MachineLedger(),
	})
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(opts.IO.Out, res)
	}
	out := opts.IO.Out
	m := res.Machine
	desc := fmt.Sprintf("%s (%s, %s)", m.Name, m.Provider, m.Resources())
	switch res.Action {
	case "already-running":
		fmt.Fprintf(out, "✓ Podman machine %s is already running\n", desc)
	case "starting":
		fmt.Fprintf(out, "Podman machine %s is starting; run start again in a moment\n", desc)
		return nil
	case "would-start":
		if res.Stopped != "" {
			fmt.Fprintf(out, "dry run: would run %s\n", res.StopCommand)
		}
		fmt.Fprintf(out, "dry run: would run %s\n", res.Command)
		return nil
	default:
		if res.Stopped != "" {
			fmt.Fprintf(out, "✓ Stopped Podman machine %s (--force)\n", res.Stopped)
		}
		fmt.Fprintf(out, "✓ Started Podman machine %s\n", desc)
	}
	ep, info, err := opts.Ping(ctx, machinepkg.Ref{Name: m.Name, Provider: m.Provider})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "✓ Podman API at %s (%s), server %s\n", ep.URI, ep.Source, info.Version)
	return nil
}

type stopOptions struct {
	IO          *IOStreams
	GOOS        string
	LoadProfile func(string) (*profile.Profile, error)
	Connect     func() agentmachine.Connector
	Machines    agentmachine.MachineOps
	Dirs        func() (agentmachine.Dirs, error)

	Profile string
	DryRun  bool
	Machine bool
	Force   bool
}

func newStopCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &stopOptions{IO: f.IO, GOOS: f.GOOS, LoadProfile: f.LoadProfile, Machines: f.Machines(), Dirs: f.Dirs,
		Connect: func() agentmachine.Connector { return f.Connector(g.Connection) }}
	cmd := &cobra.Command{
		Use:   "stop [--machine] [--dry-run]",
		Short: "Stop running agent sessions (and, with --machine, the Podman machine)",
		Long: `Stop this tool's running session containers, found by their labels, and remove them
(each session normally removes its own container; this cleans up after a session that was
killed). With --machine, also stop the profile's Podman machine on macOS and Windows.`,
		Example: `  sourceosctl agent-machine stop --dry-run
  sourceosctl agent-machine stop --machine`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			return runStop(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would stop and change nothing")
	cmd.Flags().BoolVar(&opts.Machine, "machine", false, "also stop the profile's Podman machine")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop the machine even if this tool did not start it")
	return cmd
}

func runStop(ctx context.Context, opts *stopOptions) error {
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	if opts.Machine {
		return runStopMachine(ctx, opts, prof)
	}
	engine, _, err := opts.Connect()(ctx, agentmachine.MachineOf(prof))
	if err != nil {
		return err
	}
	return agentmachine.StopSessions(ctx, engine, stopTimeout, opts.DryRun, opts.IO.Out, opts.IO.ErrOut)
}

// runStopMachine stops the profile's machine, only if this tool started it or with --force.
func runStopMachine(ctx context.Context, opts *stopOptions, prof *profile.Profile) error {
	if prof.Spec.Machine == nil {
		return &agentmachine.InputError{Flag: "--machine", Err: fmt.Errorf("profile %s names no Podman machine", prof.Metadata.Name)}
	}
	dirs, err := opts.Dirs()
	if err != nil {
		return err
	}
	action, command, err := agentmachine.StopMachine(ctx, opts.Machines, agentmachine.MachineRequest{
		Profile: prof, GOOS: opts.GOOS, DryRun: opts.DryRun, Force: opts.Force, Ledger: dirs.MachineLedger()})
	if err != nil {
		return err
	}
	name := prof.Spec.Machine.Name
	switch action {
	case "not-running":
		fmt.Fprintf(opts.IO.Out, "Podman machine %s is not running\n", name)
	case "would-stop":
		fmt.Fprintf(opts.IO.Out, "dry run: would run %s\n", command)
	default:
		fmt.Fprintf(opts.IO.Out, "✓ Stopped Podman machine %s\n", name)
	}
	return nil
}

type statusOptions struct {
	IO          *IOStreams
	GOOS        string
	LoadProfile func(string) (*profile.Profile, error)
	Deps        func() agentmachine.StatusDeps

	Profile string
	Output  string
}

func newStatusCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &statusOptions{IO: f.IO, GOOS: f.GOOS, LoadProfile: f.LoadProfile,
		Deps: func() agentmachine.StatusDeps {
			deps := agentmachine.StatusDeps{Connect: f.Connector(g.Connection), Machines: f.Machines(), Now: f.Now}
			if home, err := f.Home(); err == nil {
				deps.Dirs = agentmachine.DirsFor(f.GOOS, f.Getenv, home)
			}
			return deps
		}}
	cmd := &cobra.Command{
		Use:   "status [-o table|json]",
		Short: "Show the machine or socket, workspaces, running sessions and the image",
		Long: `Show the Podman API in use, the workspaces (state, uptime, CPU, memory and PIDs in use,
branch, repository; their gateway's state in -o json), this tool's running session containers
(name, tool, repository, uptime) and whether the profile's image is present, with its digest.
Workspaces publish no port: editors reach them over SSH (ssh-config). Exits 4 when the
Podman API cannot be reached.`,
		Example: `  sourceosctl agent-machine status
  sourceosctl agent-machine status -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
				return err
			}
			return runStatus(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func runStatus(ctx context.Context, opts *statusOptions) error {
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	report, statusErr := agentmachine.Status(ctx, opts.Deps(), prof)
	if opts.Output == outJSON {
		err = writeJSON(opts.IO.Out, report)
	} else {
		err = agentmachine.WriteStatus(opts.IO.Out, report)
	}
	if err != nil {
		return err
	}
	return statusErr
}
