package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
)

type initOptions struct {
	IO      *IOStreams
	GOOS    string
	Getenv  func(string) string
	Home    func() (string, error)
	WorkDir func() (string, error)

	Profile string
	Repo    string
	Name    string
	Out     string
	Force   bool
	DryRun  bool
}

func newInitCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &initOptions{IO: f.IO, GOOS: f.GOOS, Getenv: f.Getenv, Home: f.Home, WorkDir: f.WorkDir}
	cmd := &cobra.Command{
		Use:   "init --repo PATH [--profile NAME|PATH] [--out PATH] [--force] [--dry-run]",
		Short: "Render an example or a profile file into a profile for one repository",
		Long: `Render an AgentMachineProfile for one repository from a built-in example (by name) or
a profile file, and write it, mode 0600, to the profiles directory:
  Linux    $XDG_CONFIG_HOME/sourceos/agent-machine/profiles/NAME.yaml
  macOS    ~/Library/Application Support/sourceos/agent-machine/profiles/NAME.yaml
  Windows  %AppData%\sourceos\agent-machine\profiles\NAME.yaml

The repository must exist and be readable. Mounts whose source does not exist on this host
are left out (with a warning), and secrets are never mounted: they reach a tool only through
--secret. An existing file is kept unless --force is given.

Built-in examples: linux-rootless, macos-podman, windows-wsl (default: the one for this OS).`,
		Example: `  sourceosctl agent-machine init --profile linux-rootless --repo ~/dev/app
  sourceosctl agent-machine init --profile ./team-profile.yaml --repo . --out ./agent.yaml
  sourceosctl agent-machine init --repo ~/dev/app --dry-run`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if err := opts.validate(); err != nil {
				return err
			}
			return runInit(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Repo, "repo", "", "repository `PATH` the profile is for (required)")
	fl.StringVar(&opts.Name, "name", "", "profile `NAME` (default: from the repository's directory name)")
	fl.StringVar(&opts.Out, "out", "", "write to `PATH` instead of the profiles directory")
	fl.BoolVar(&opts.Force, "force", false, "replace an existing file")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the rendered YAML and write nothing")
	return cmd
}

func (o *initOptions) validate() error {
	if o.Repo == "" {
		return &agentmachine.InputError{Flag: "--repo", Err: errors.New("is required: give the repository the profile is for"), Fix: "sourceosctl agent-machine init --repo ~/dev/app"}
	}
	return nil
}

func runInit(opts *initOptions) error {
	home, err := opts.Home()
	if err != nil {
		return fmt.Errorf("find home directory: %w", err)
	}
	wd, err := opts.WorkDir()
	if err != nil {
		return fmt.Errorf("find working directory: %w", err)
	}
	res, err := agentmachine.Init(agentmachine.InitRequest{
		Source: opts.Profile, Repo: opts.Repo, Name: opts.Name, Out: opts.Out,
		Force: opts.Force, DryRun: opts.DryRun,
		GOOS: opts.GOOS, Home: home, WorkDir: wd, Dirs: agentmachine.DirsFor(opts.GOOS, opts.Getenv, home),
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(opts.IO.ErrOut, "! %s\n", w)
	}
	if opts.DryRun {
		fmt.Fprintf(opts.IO.ErrOut, "dry run: would write %s (mode 0600); nothing was written\n", res.Path)
		_, err := opts.IO.Out.Write(res.YAML)
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "✓ Wrote profile %s\n  next: sourceosctl agent-machine shell --profile %s --dry-run\n", res.Name, res.Path)
	fmt.Fprintln(opts.IO.Out, res.Path)
	return nil
}
