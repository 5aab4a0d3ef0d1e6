package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/profile"
)

func usesMachine(f *Factory, p *profile.Profile) bool {
	return f.GOOS == "darwin" || f.GOOS == "windows" || machineName(p) != ""
}

type startOptions struct {
	Factory *Factory
	Globals *GlobalOptions

	DryRun bool
	Force  bool
	Output string
}

func newStartCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &startOptions{Factory: f, Globals: g}
	cmd := &cobra.Command{
		Use:   "start [--dry-run]",
		Short: "Start the Podman machine or API service the profile needs",
		Long: `Make sure Podman can run sessions.

Linux (no machine): an API that already answers is left alone; otherwise the systemd
podman.socket unit is started where systemd manages your session, or else
'podman system service' is started in the background with its log in the state directory
($XDG_STATE_HOME/sourceos/agent-machine/podman-service.log). An endpoint set explicitly
(--connection, CONTAINER_HOST) is never replaced by a local service.

macOS and Windows: the profile's Podman machine is started; one is never created: if it is
absent, the exact 'podman machine init' command is printed.`,
		Example: `  sourceosctl agent-machine start
  sourceosctl agent-machine start --dry-run`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
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

func runStart(ctx context.Context, opts *startOptions) error {
	f := opts.Factory
	prof, err := f.LoadProfile(opts.Globals.Profile)
	if err != nil {
		return err
	}
	if usesMachine(f, prof) {
		return runStartMachine(ctx, opts, prof)
	}
	dirs, err := f.Dirs()
	if err != nil {
		return err
	}
	res, err := agentmachine.StartNative(ctx, agentmachine.StartDeps{
		UID: f.UID, RuntimeDir: f.Getenv("XDG_RUNTIME_DIR"), Dirs: dirs, Stat: os.Stat, ReadFile: os.ReadFile,
		Resolve: func(ctx context.Context) (string, string, error) {
			ep, err := f.Resolver().Resolve(ctx, opts.Globals.Connection, "")
			return ep.URI, ep.Source, err
		},
		Ping: func(ctx context.Context, uri string) (agentmachine.APIStatus, error) {
			return pingAPI(ctx, podman.Endpoint{URI: uri, Source: "local socket"})
		},
		StartUnit: func(ctx context.Context, user bool) error {
			return podman.StartSocketUnit(ctx, f.Runner, user)
		},
		Spawn: podman.SpawnService, ServiceCommand: podman.ServiceCommand,
		ErrOut: f.IO.ErrOut, Wait: 30 * time.Second,
	}, opts.DryRun)
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(f.IO.Out, res)
	}
	switch {
	case res.Action == "already-running":
		fmt.Fprintf(f.IO.Out, "✓ The Podman API is already up at %s (%s), server %s\n", res.URI, res.Source, res.API.ServerVersion)
	case opts.DryRun:
		fmt.Fprintf(f.IO.Out, "dry run: would run %s\n", agentmachine.ShellQuote(res.Command))
		if res.Log != "" {
			fmt.Fprintf(f.IO.Out, "  in the background, logging to %s; the API would answer at %s\n", res.Log, res.URI)
		}
	default:
		fmt.Fprintf(f.IO.Out, "✓ Started the Podman API at %s (%s), server %s\n", res.URI, strings.Join(res.Command, " "), res.API.ServerVersion)
		if res.Log != "" {
			fmt.Fprintf(f.IO.Out, "  pid %d, log %s\n", res.PID, res.Log)
		}
	}
	return nil
}

// runStartMachine starts the profile's Podman machine, then makes sure its API answers.
func runStartMachine(ctx context.Context, opts *startOptions, prof *profile.Profile) error {
	f := opts.Factory
	if prof.Spec.Machine == nil {
		return &agentmachine.InputError{Flag: "--profile", Err: fmt.Errorf("profile %s names no Podman machine, which %s needs", prof.Metadata.Name, f.GOOS),
			Fix: "add spec.machine (see profiles/examples/macos-podman.yaml), or: sourceosctl agent-machine init --repo PATH"}
	}
	dirs, err := f.Dirs()
	if err != nil {
		return err
	}
	res, err := agentmachine.StartMachine(ctx, f.MachineOps(), agentmachine.MachineRequest{
		Profile: prof, GOOS: f.GOOS, Repo: prof.Spec.Workspace.Repo, DryRun: opts.DryRun, Force: opts.Force, Ledger: dirs.MachineLedger(),
	})
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(f.IO.Out, res)
	}
	m := res.Machine
	desc := fmt.Sprintf("%s (%s, %d cpus, %d MiB)", m.Name, m.Provider, m.CPUs, m.MemoryMiB)
	switch res.Action {
	case "already-running":
		fmt.Fprintf(f.IO.Out, "✓ Podman machine %s is already running\n", desc)
	case "starting":
		fmt.Fprintf(f.IO.Out, "Podman machine %s is starting; run start again in a moment\n", desc)
		return nil
	case "would-start":
		if res.Stopped != "" {
			fmt.Fprintf(f.IO.Out, "dry run: would run podman machine stop %s\n", res.Stopped)
		}
		fmt.Fprintf(f.IO.Out, "dry run: would run %s\n", res.Command)
		return nil
	default:
		if res.Stopped != "" {
			fmt.Fprintf(f.IO.Out, "✓ Stopped Podman machine %s (--force)\n", res.Stopped)
		}
		fmt.Fprintf(f.IO.Out, "✓ Started Podman machine %s\n", desc)
	}
	if opts.DryRun {
		return nil
	}
	ep, err := f.Resolver().Resolve(ctx, opts.Globals.Connection, m.Name)
	if err != nil {
		return err
	}
	st, err := pingAPI(ctx, ep)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Out, "✓ Podman API at %s (%s), server %s\n", ep.URI, ep.Source, st.ServerVersion)
	return nil
}

// pingAPI connects to the endpoint and asks for the server's status.
func pingAPI(ctx context.Context, ep podman.Endpoint) (agentmachine.APIStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := podman.Connect(cctx, ep)
	if err != nil {
		return agentmachine.APIStatus{}, err
	}
	info, err := c.Info(cctx)
	if err != nil {
		return agentmachine.APIStatus{}, err
	}
	return agentmachine.APIStatus{URI: ep.URI, Source: ep.Source, ServerVersion: info.Version, Rootless: info.Rootless, CgroupsVersion: info.Cgroups}, nil
}

type stopOptions struct {
	Factory *Factory
	Globals *GlobalOptions

	DryRun  bool
	Machine bool
	Force   bool
}

func newStopCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &stopOptions{Factory: f, Globals: g}
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
			return runStop(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would stop and change nothing")
	cmd.Flags().BoolVar(&opts.Machine, "machine", false, "also stop the profile's Podman machine")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop the machine even if this tool did not start it")
	return cmd
}

func runStop(ctx context.Context, opts *stopOptions) error {
	f := opts.Factory
	prof, err := f.LoadProfile(opts.Globals.Profile)
	if err != nil {
		return err
	}
	if opts.Machine {
		return runStopMachine(ctx, opts, prof)
	}
	client, _, err := connect(ctx, f, opts.Globals, prof)
	if err != nil {
		return err
	}
	sessions, err := client.Containers(ctx, agentmachine.LabelManaged+"=true", false)
	if err != nil {
		return err
	}
	if len(sessions) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "No running sessions.")
		return nil
	}
	var errs []error
	for _, s := range sessions {
		if opts.DryRun {
			fmt.Fprintf(f.IO.Out, "would stop and remove %s (session %s, %s)\n", s.Name, s.Labels[agentmachine.LabelSession], s.Labels[agentmachine.LabelTool])
			continue
		}
		if err := client.Stop(ctx, s.ID, stopTimeout); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := client.Remove(s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(f.IO.Out, "✓ stopped %s\n", s.Name)
	}
	return errors.Join(errs...)
}

// runStopMachine stops the profile's machine, only if this tool started it or with --force.
func runStopMachine(ctx context.Context, opts *stopOptions, prof *profile.Profile) error {
	f := opts.Factory
	if prof.Spec.Machine == nil {
		return &agentmachine.InputError{Flag: "--machine", Err: fmt.Errorf("profile %s names no Podman machine", prof.Metadata.Name)}
	}
	dirs, err := f.Dirs()
	if err != nil {
		return err
	}
	action, err := agentmachine.StopMachine(ctx, f.MachineOps(), agentmachine.MachineRequest{
		Profile: prof, GOOS: f.GOOS, DryRun: opts.DryRun, Force: opts.Force, Ledger: dirs.MachineLedger()})
	if err != nil {
		return err
	}
	name := prof.Spec.Machine.Name
	switch action {
	case "not-running":
		fmt.Fprintf(f.IO.Out, "Podman machine %s is not running\n", name)
	case "would-stop":
		fmt.Fprintf(f.IO.Out, "dry run: would run podman machine stop %s\n", name)
	default:
		fmt.Fprintf(f.IO.Out, "✓ Stopped Podman machine %s\n", name)
	}
	return nil
}

// connect resolves and connects like a session does.
func connect(ctx context.Context, f *Factory, g *GlobalOptions, prof *profile.Profile) (*podman.Client, podman.Endpoint, error) {
	ep, err := f.Resolver().Resolve(ctx, g.Connection, machineName(prof))
	if err != nil {
		return nil, ep, err
	}
	c, err := podman.Connect(ctx, ep)
	return c, ep, err
}

type statusOptions struct {
	Factory *Factory
	Globals *GlobalOptions

	Output string
}

// StatusSchemaVersion identifies status's JSON output.
const StatusSchemaVersion = "sourceos.dev/agent-machine-status/v1"

// StatusReport is what status prints.
type StatusReport struct {
	SchemaVersion string         `json:"schemaVersion"`
	Machine       *StatusMachine `json:"machine,omitempty"`
	Connection    StatusAPI      `json:"connection"`
	Sessions      []StatusEntry  `json:"sessions"`
	Image         StatusImage    `json:"image"`
}

// StatusMachine is the profile's Podman machine, when it uses one.
type StatusMachine struct {
	Name      string `json:"name"`
	Provider  string `json:"provider,omitempty"`
	State     string `json:"state,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	Uptime    string `json:"uptime,omitempty"`
	Error     string `json:"error,omitempty"`
}

type StatusAPI struct {
	URI       string `json:"uri"`
	Source    string `json:"source"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Server    string `json:"serverVersion,omitempty"`
	Rootless  bool   `json:"rootless"`
}

type StatusEntry struct {
	Name    string    `json:"name"`
	Session string    `json:"session"`
	Tool    string    `json:"tool"`
	Repo    string    `json:"repo"`
	Profile string    `json:"profile"`
	Started time.Time `json:"started"`
	Uptime  string    `json:"uptime"`
}

type StatusImage struct {
	Ref     string `json:"ref"`
	Present bool   `json:"present"`
	ID      string `json:"id,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

func newStatusCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &statusOptions{Factory: f, Globals: g}
	cmd := &cobra.Command{
		Use:   "status [-o table|json]",
		Short: "Show the machine or socket, running sessions and the image",
		Long: `Show the Podman API in use, this tool's running session containers (name, tool,
repository, uptime) and whether the profile's image is present, with its digest. Exits 4
when the Podman API cannot be reached.`,
		Example: `  sourceosctl agent-machine status
  sourceosctl agent-machine status -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	f := opts.Factory
	prof, err := f.LoadProfile(opts.Globals.Profile)
	if err != nil {
		return err
	}
	r := StatusReport{SchemaVersion: StatusSchemaVersion, Sessions: []StatusEntry{}, Image: StatusImage{Ref: prof.Spec.Image.Ref}}
	if name := machineName(prof); name != "" {
		m, found, err := f.MachineOps().Get(ctx, name)
		switch {
		case err != nil:
			r.Machine = &StatusMachine{Name: name, Error: err.Error()}
		case !found:
			r.Machine = &StatusMachine{Name: name, Error: "does not exist"}
		default:
			r.Machine = &StatusMachine{Name: m.Name, Provider: m.Provider, State: m.State, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB}
			if m.State == agentmachine.MachineRunning && !m.LastUp.IsZero() {
				r.Machine.Uptime = f.Now().Sub(m.LastUp).Round(time.Second).String()
			}
		}
	}
	client, ep, connErr := connect(ctx, f, opts.Globals, prof)
	r.Connection = StatusAPI{URI: ep.URI, Source: ep.Source}
	if connErr == nil {
		connErr = fillStatus(ctx, f, client, &r)
	}
	if connErr != nil {
		r.Connection.Error = connErr.Error()
	}
	if opts.Output == outJSON {
		if err := writeJSON(f.IO.Out, r); err != nil {
			return err
		}
	} else if err := writeStatusTable(f, r); err != nil {
		return err
	}
	return connErr
}

func fillStatus(ctx context.Context, f *Factory, c *podman.Client, r *StatusReport) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	r.Connection.Reachable, r.Connection.Server, r.Connection.Rootless = true, info.Version, info.Rootless
	sessions, err := c.Containers(ctx, agentmachine.LabelManaged+"=true", false)
	if err != nil {
		return err
	}
	now := f.Now()
	for _, s := range sessions {
		r.Sessions = append(r.Sessions, StatusEntry{
			Name: s.Name, Session: s.Labels[agentmachine.LabelSession], Tool: s.Labels[agentmachine.LabelTool],
			Repo: s.Labels[agentmachine.LabelRepo], Profile: s.Labels[agentmachine.LabelProfile],
			Started: s.Started, Uptime: now.Sub(s.Started).Round(time.Second).String(),
		})
	}
	sort.Slice(r.Sessions, func(i, j int) bool { return r.Sessions[i].Started.Before(r.Sessions[j].Started) })
	img, found, err := c.Image(ctx, r.Image.Ref)
	if err != nil {
		return err
	}
	r.Image.Present, r.Image.ID, r.Image.Digest = found, img.ID, img.Digest
	return nil
}

func writeStatusTable(f *Factory, r StatusReport) error {
	w := f.IO.Out
	if m := r.Machine; m != nil {
		line := fmt.Sprintf("%s (%s): %s, %d cpus, %d MiB", m.Name, m.Provider, m.State, m.CPUs, m.MemoryMiB)
		if m.Uptime != "" {
			line += ", up " + m.Uptime
		}
		if m.Error != "" {
			line = m.Name + ": " + m.Error
		}
		fmt.Fprintf(w, "Machine     %s\n", line)
	}
	api := fmt.Sprintf("%s (%s)", orNone(r.Connection.URI), orNone(r.Connection.Source))
	if r.Connection.Reachable {
		mode := "rootful"
		if r.Connection.Rootless {
			mode = "rootless"
		}
		api += fmt.Sprintf(", server %s, %s", r.Connection.Server, mode)
	} else {
		api += ": not reachable"
	}
	fmt.Fprintf(w, "Podman API  %s\n", api)
	img := r.Image.Ref + ": not present locally"
	if r.Image.Present {
		img = fmt.Sprintf("%s: present, id %.12s, digest %s", r.Image.Ref, r.Image.ID, r.Image.Digest)
	}
	if !r.Connection.Reachable {
		img = r.Image.Ref + ": unknown (no API)"
	}
	fmt.Fprintf(w, "Image       %s\n", img)
	if len(r.Sessions) == 0 {
		fmt.Fprintln(w, "Sessions    none running")
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tTOOL\tREPOSITORY\tSTARTED\tUPTIME")
	for _, s := range r.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Tool, s.Repo, s.Started.Format(time.RFC3339), s.Uptime)
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
