package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/textsafe"
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
	Stack   string
	// Devcontainer is --from-devcontainer.
	Devcontainer string
}

func newInitCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &initOptions{IO: f.IO, GOOS: f.GOOS, Getenv: f.Getenv, Home: f.Home, WorkDir: f.WorkDir}
	cmd := &cobra.Command{
		Use:   "init --repo PATH [--profile NAME|PATH] [--from-devcontainer PATH] [--out PATH] [--force] [--dry-run]",
		Short: "Render an example or a profile file into a profile for one repository",
		Long: `Render an AgentMachineProfile for one repository from a built-in example (by name) or
a profile file, and write it, mode 0600, to the profiles directory:
  Linux    $XDG_CONFIG_HOME/sourceos/agent-machine/profiles/NAME.yaml
  macOS    ~/Library/Application Support/sourceos/agent-machine/profiles/NAME.yaml
  Windows  %AppData%\sourceos\agent-machine\profiles\NAME.yaml

The repository must exist and be readable. Mounts whose source does not exist on this host
are left out (with a warning), and secrets are never mounted: they reach a tool only through
--secret. An existing file is kept unless --force is given.

Built-in examples: linux-rootless, macos-podman, windows-wsl (default: the one for this OS).

The image follows the repository's language stack, detected from the files at its root:
Cargo.toml → rust, package.json → node, go.mod → go, pyproject.toml, requirements.txt or
setup.py → python, Gemfile → ruby, pom.xml or build.gradle → java. When several match, the
one with most source files wins and the others are named; with none the default image
stays. The profile then names the stack image (localhost/sourceos/agent-workspace:go-1.19),
which image build --stack makes. --stack chooses (none: the default image); a profile that
names an image of its own keeps it unless --stack is given.

--from-devcontainer PATH takes the repository's environment from its devcontainer.json
(PATH is the file, or the repository holding .devcontainer/devcontainer.json; comments and
trailing commas allowed): image (or build.dockerfile, built by image build --dockerfile),
containerEnv and remoteEnv (spec.env), workspaceFolder (spec.workspace.mountPath),
forwardPorts (spec.workspace.ports, which serve serves on 127.0.0.1 only), and
onCreateCommand, updateContentCommand, postCreateCommand and postStartCommand (string, array
and object forms) as a workspace's post-create and post-start commands, which run inside
it as governed joins, never on the host. Whatever would widen the boundary is refused, each
with its reason: initializeCommand (runs on the host), runArgs, privileged, capAdd,
securityOpt, mounts, workspaceMount, features (fetched from a registry, installed as root),
appPort, build.options, variables naming the host's environment (${localEnv:…}) or looking
like credentials. A compose-based file is refused as a whole. The rendered profile is checked
by the same loader as any profile, so an import cannot widen a session.`,
		Example: `  sourceosctl agent-machine init --profile linux-rootless --repo ~/dev/app
  sourceosctl agent-machine init --profile ./team-profile.yaml --repo . --out ./agent.yaml
  sourceosctl agent-machine init --repo ~/dev/app --dry-run
  sourceosctl agent-machine init --repo ~/dev/api --stack go@1.19
  sourceosctl agent-machine init --from-devcontainer ~/dev/app --dry-run`,
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
	fl.StringVar(&opts.Devcontainer, "from-devcontainer", "", "take the image, environment, workspace folder, ports and lifecycle commands from a devcontainer.json (`PATH`: the file or its repository); --repo defaults to its repository")
	fl.StringVar(&opts.Stack, "stack", "", "the image's language `STACK` (go, node@18 …; none for the default image; default: detected from the repository's files)")
	return cmd
}

func (o *initOptions) validate() error {
	if o.Devcontainer != "" && o.Stack != "" {
		return usageErrorf("--stack and --from-devcontainer both choose the image: give one")
	}
	if o.Repo == "" && o.Devcontainer == "" {
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
		Force: opts.Force, DryRun: opts.DryRun, Stack: opts.Stack, Devcontainer: opts.Devcontainer,
		GOOS: opts.GOOS, Home: home, WorkDir: wd, Dirs: agentmachine.DirsFor(opts.GOOS, opts.Getenv, home),
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(opts.IO.ErrOut, "! %s\n", w)
	}
	if dc := res.Devcontainer; dc != nil {
		// Names and values come from the file: escaped, so it cannot fake or hide a line.
		fmt.Fprintf(opts.IO.ErrOut, "From %s:\n", textsafe.String(dc.File))
		for _, f := range dc.Taken {
			fmt.Fprintf(opts.IO.ErrOut, "  ✓ %s → %s\n", textsafe.String(f.Field), textsafe.String(f.Reason))
		}
		for _, f := range dc.Refused {
			fmt.Fprintf(opts.IO.ErrOut, "  ✗ %s: refused: %s\n", textsafe.String(f.Field), textsafe.String(f.Reason))
		}
		for _, f := range dc.Ignored {
			fmt.Fprintf(opts.IO.ErrOut, "  - %s: left out: %s\n", textsafe.String(f.Field), textsafe.String(f.Reason))
		}
		if res.Build != "" {
			fmt.Fprintf(opts.IO.ErrOut, "Build its image once with: %s\n", res.Build)
		}
	}
	if res.Stack != "" {
		fmt.Fprintf(opts.IO.ErrOut, "Stack %s: the profile uses %s", res.Stack, res.Image)
		if res.Build != "" {
			fmt.Fprintf(opts.IO.ErrOut, " (build it once with: %s)", res.Build)
		}
		fmt.Fprintln(opts.IO.ErrOut)
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
