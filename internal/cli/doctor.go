package cli

import (
	"context"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	machinepkg "github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/profile"
)

type doctorOptions struct {
	IO   *IOStreams
	Deps func(*doctorOptions) agentmachine.DoctorDeps

	Repo    string
	Output  string
	Timeout time.Duration
}

func newDoctorCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &doctorOptions{IO: f.IO, Deps: func(o *doctorOptions) agentmachine.DoctorDeps { return f.doctorDeps(g, o) }}
	cmd := &cobra.Command{
		Use:   "doctor [--repo PATH] [-o table|json]",
		Short: "Check whether this workstation can run governed agent sessions (read-only)",
		Long: `Check the host, the Podman CLI and API, the Podman machine (macOS, Windows) or rootless
set-up (Linux), git and nix, the repository, the profile, the evidence signing key and the
image. Each check says ok, warn or fail and, when not ok, the exact command that fixes it.

doctor only reads: it writes no file, starts no machine and activates no socket. Checks run
concurrently, each with a time limit, so one hanging probe cannot hang doctor. It exits 0
when nothing fails and 1 otherwise.`,
		Example: `  sourceosctl agent-machine doctor
  sourceosctl agent-machine doctor --repo ~/dev/app -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return runDoctor(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Repo, "repo", "", "repository `PATH` to check (default: the profile's spec.workspace.repo)")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Second, "time limit for each check")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

// serverStatus resolves and connects as a session would (never starting a service) and asks
// the service for its status, within ctx: each check's time limit reaches the Podman call.
func serverStatus(ctx context.Context, f *Factory, connection string, m machinepkg.Ref) (Engine, agentmachine.APIStatus, error) {
	e, ep, err := f.Connect(ctx, connection, m)
	if err != nil {
		return nil, agentmachine.APIStatus{}, err
	}
	info, err := e.Info(ctx)
	if err != nil {
		return nil, agentmachine.APIStatus{}, err
	}
	return e, agentmachine.APIStatus{URI: ep.URI, Source: ep.Source, ServerVersion: info.Version, Rootless: info.Rootless, CgroupsVersion: info.Cgroups}, nil
}

func runDoctor(ctx context.Context, opts *doctorOptions) error {
	report := agentmachine.Doctor(ctx, opts.Deps(opts))
	if opts.Output == outJSON {
		if err := writeJSON(opts.IO.Out, report); err != nil {
			return err
		}
	} else if err := writeDoctorTable(opts.IO.Out, report, opts.IO.OutTTY); err != nil {
		return err
	}
	if report.Summary.Failures > 0 {
		return &ExitError{Code: ExitFailure}
	}
	return nil
}

// doctorDeps are doctor's probes on this host; every one only reads.
func (f *Factory) doctorDeps(g *GlobalOptions, opts *doctorOptions) agentmachine.DoctorDeps {
	home, _ := f.Home()
	wd, _ := f.WorkDir()
	prof, profErr := f.LoadProfile(g.Profile)
	repo := opts.Repo
	if repo == "" && prof != nil {
		repo = prof.Spec.Workspace.Repo
	}
	if repo != "" {
		repo, _ = profile.ResolvePath(repo, home, wd)
	}
	username := strconv.Itoa(f.UID)
	if u, err := user.LookupId(username); err == nil {
		username = u.Username
	}
	git, _ := f.LookPath("git")
	machine := agentmachine.MachineOf(prof)
	return agentmachine.DoctorDeps{
		GOOS: f.GOOS, GOARCH: f.GOARCH, Getenv: f.Getenv, UID: f.UID, Username: username,
		Runner: f.Runner, LookPath: f.LookPath, ReadFile: f.ReadFile, Stat: f.Stat,
		Profile: func() (*profile.Profile, error) { return prof, profErr },
		Dirs:    agentmachine.DirsFor(f.GOOS, f.Getenv, home), Repo: repo, Timeout: opts.Timeout,
		Git: fingerprint.Git{Binary: git},
		RuntimeDir: func() (agentmachine.RuntimeDirInfo, error) {
			d, err := podman.ResolveRuntimeDir(f.Resolver().RuntimeEnv())
			return agentmachine.RuntimeDirInfo{Path: d.Path, Socket: d.Socket(), Why: d.Why, Absent: d.Absent}, err
		},
		API: func(ctx context.Context) (agentmachine.APIStatus, error) {
			_, st, err := serverStatus(ctx, f, g.Connection, machine)
			return st, err
		},
		Machine: func(ctx context.Context, ref machinepkg.Ref) (machinepkg.Info, error) {
			m, found, err := f.Machines().Get(ctx, ref.Name, ref.Provider)
			if err == nil && !found {
				err = &agentmachine.MissingError{Component: "Podman machine " + ref.Name, Detail: "does not exist",
					Fix: agentmachine.InitCommand(prof, f.GOOS, repo)}
			}
			return m, err
		},
		ImagePresent: func(ctx context.Context, ref string) (bool, error) {
			e, _, err := f.Connect(ctx, g.Connection, machine)
			if err != nil {
				return false, fmt.Errorf("the Podman API is not reachable")
			}
			_, found, err := e.Image(ctx, ref)
			return found, err
		},
	}
}

func (o *doctorOptions) validate() error {
	if o.Timeout <= 0 {
		return usageErrorf("--timeout must be positive, such as 10s; got %s", o.Timeout)
	}
	return validateOutput(o.Output, outTable, outJSON)
}

func writeDoctorTable(w io.Writer, r agentmachine.Report, tty bool) error {
	marks := map[string]string{agentmachine.StatusOK: "[ok]", agentmachine.StatusWarn: "[warn]", agentmachine.StatusFail: "[FAIL]"}
	if tty {
		marks = map[string]string{agentmachine.StatusOK: "✓", agentmachine.StatusWarn: "!", agentmachine.StatusFail: "✗"}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", marks[c.Status], c.Name, c.Finding)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d ok, %d warning(s), %d failure(s)\n", r.Summary.OK, r.Summary.Warnings, r.Summary.Failures)
	return err
}
