package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/profile"
)

type doctorOptions struct {
	Factory *Factory
	Globals *GlobalOptions

	Repo    string
	Output  string
	Timeout time.Duration
}

func newDoctorCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &doctorOptions{Factory: f, Globals: g}
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
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
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

// apiProbe resolves, connects to and asks the Podman service, once, for checks that run
// concurrently (doctor, fingerprint). It never starts a service.
func apiProbe(f *Factory, g *GlobalOptions, prof *profile.Profile) func(context.Context) (*podman.Client, agentmachine.APIStatus, error) {
	return onceAPI(func(ctx context.Context) (*podman.Client, agentmachine.APIStatus, error) {
		name := ""
		if prof != nil {
			name = machineName(prof)
		}
		ep, err := f.Resolver().Resolve(ctx, g.Connection, name)
		if err != nil {
			return nil, agentmachine.APIStatus{}, err
		}
		// The client outlives this probe (the image check reuses it): bind it to the
		// command, not to the probe's deadline; every call has its own time limit.
		c, err := podman.Connect(context.WithoutCancel(ctx), ep)
		if err != nil {
			return nil, agentmachine.APIStatus{}, err
		}
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		info, err := c.Info(cctx)
		if err != nil {
			return nil, agentmachine.APIStatus{}, err
		}
		return c, agentmachine.APIStatus{URI: ep.URI, Source: ep.Source, ServerVersion: info.Version, Rootless: info.Rootless, CgroupsVersion: info.Cgroups}, nil
	})
}

// onceAPI runs the Podman probe once and shares its result between checks running
// concurrently.
func onceAPI(probe func(context.Context) (*podman.Client, agentmachine.APIStatus, error)) func(context.Context) (*podman.Client, agentmachine.APIStatus, error) {
	var (
		once   sync.Once
		client *podman.Client
		status agentmachine.APIStatus
		err    error
	)
	return func(ctx context.Context) (*podman.Client, agentmachine.APIStatus, error) {
		once.Do(func() { client, status, err = probe(ctx) })
		return client, status, err
	}
}

func runDoctor(ctx context.Context, opts *doctorOptions) error {
	f := opts.Factory
	home, _ := f.Home()
	wd, _ := f.WorkDir()
	dirs := agentmachine.DirsFor(f.GOOS, f.Getenv, home)
	prof, profErr := f.LoadProfile(opts.Globals.Profile)
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
	api := apiProbe(f, opts.Globals, prof)
	deps := agentmachine.DoctorDeps{
		GOOS: f.GOOS, GOARCH: f.GOARCH, Getenv: f.Getenv, UID: f.UID, Username: username,
		Runner: f.Runner, LookPath: exec.LookPath, ReadFile: os.ReadFile, Stat: os.Stat,
		Profile: func() (*profile.Profile, error) { return prof, profErr },
		Dirs:    dirs, Repo: repo, Timeout: opts.Timeout,
		API: func(ctx context.Context) (agentmachine.APIStatus, error) {
			_, st, err := api(ctx)
			return st, err
		},
		Machine: func(ctx context.Context, name string) (agentmachine.MachineStatus, error) {
			m, found, err := f.MachineOps().Get(ctx, name)
			if err == nil && !found {
				err = &agentmachine.MissingError{Component: "Podman machine " + name, Detail: "does not exist",
					Fix: agentmachine.InitCommand(prof, f.GOOS, repo)}
			}
			return m, err
		},
		ImagePresent: func(ctx context.Context, ref string) (bool, error) {
			c, _, err := api(ctx)
			if err != nil {
				return false, fmt.Errorf("the Podman API is not reachable")
			}
			_, found, err := c.Image(ctx, ref)
			return found, err
		},
	}
	report := agentmachine.Doctor(ctx, deps)
	if opts.Output == outJSON {
		if err := writeJSON(f.IO.Out, report); err != nil {
			return err
		}
	} else if err := writeDoctorTable(f.IO.Out, report, f.IO.OutTTY); err != nil {
		return err
	}
	if report.Summary.Failures > 0 {
		return &ExitError{Code: ExitFailure}
	}
	return nil
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
