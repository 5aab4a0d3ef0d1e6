package cli

import (
	"github.com/spf13/cobra"
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
unless the profile grants one.`,
		Example: `  sourceosctl agent-machine shell --repo ~/dev/app
  sourceosctl agent-machine shell --repo . -- git log -1
  sourceosctl agent-machine shell --repo . --dry-run -o podman`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			return runSession(cmd, opts)
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

The tool's exit code becomes sourceosctl's exit code.`,
		Example: `  sourceosctl agent-machine run --tool claude-code --repo ~/dev/app --secret anthropic-api-key
  sourceosctl agent-machine run --tool codex --repo . -- --version
  sourceosctl agent-machine run --tool claude-code --repo . --dry-run -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			if opts.Tool == "" {
				return usageErrorf("--tool is required: name an enabled tool such as claude-code or codex")
			}
			return runSession(cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Tool, "tool", "", "tool `NAME` to run: claude-code, codex, or a custom tool from the profile")
	addSessionFlags(cmd, opts)
	return cmd
}

func runSession(cmd *cobra.Command, opts *sessionOptions) error {
	if err := validateOutput(opts.Output, outTable, outJSON, outPodman); err != nil {
		return err
	}
	return &NotImplementedError{Command: cmd.CommandPath(), Planned: "governed sessions: mount policy, plan, --dry-run and execution on Podman"}
}
