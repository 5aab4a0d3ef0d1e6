// Package cli wires sourceosctl's commands to the domain packages. No logic lives here beyond
// parsing flags, validating them and printing results.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
)

// GlobalOptions are the flags every agent-machine command accepts.
type GlobalOptions struct {
	Profile    string
	Connection string
	Verbose    bool
}

// Main runs the command line and returns the process exit code.
func Main() int {
	f := NewFactory()
	ctx, stop := withSignals(context.Background())
	defer stop()
	return Run(ctx, f, os.Args[1:])
}

// withSignals cancels ctx on SIGINT or SIGTERM with an *agentmachine.Interrupt cause, so a
// session can stop its container and the exit code can say which signal it was.
func withSignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			name := "SIGINT"
			if sig == syscall.SIGTERM {
				name = "SIGTERM"
			}
			cancel(&agentmachine.Interrupt{Signal: name})
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(sigs); close(done); cancel(nil) }
}

// Run executes args against the factory; tests call it with fakes.
func Run(ctx context.Context, f *Factory, args []string) int {
	root := NewRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(f.IO.ErrOut, err)
	}
	return ExitCode(err)
}

// NewRootCmd builds the whole command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	g := &GlobalOptions{}
	root := &cobra.Command{
		Use:   "sourceosctl",
		Short: "SourceOS workstation tool",
		Long: `sourceosctl is the SourceOS workstation tool.

Its agent-machine commands run AI coding agents (claude-code, codex, a shell) in a hardened
Podman container that sees only the paths a profile allows, and write a signed evidence
bundle for every session.

` + exitCodesHelp,
		Example: `  sourceosctl agent-machine doctor
  sourceosctl agent-machine run --tool claude-code --repo ~/dev/app --dry-run
  sourceosctl am shell --repo . -- git status`,
		Version:       fmt.Sprintf("%s (commit %s, %s)", f.Build.Version, f.Build.Commit, f.Build.GoVersion),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          helpOnly,
	}
	root.SetVersionTemplate("sourceosctl version {{.Version}}\n")
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetIn(f.IO.In)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })

	pf := root.PersistentFlags()
	pf.StringVar(&g.Profile, "profile", "", "AgentMachineProfile `PATH` (default: the built-in profile for this OS)")
	pf.StringVar(&g.Connection, "connection", "", "Podman connection `NAME|URI` (default: CONTAINER_CONNECTION, CONTAINER_HOST, then the local socket)")
	pf.BoolVarP(&g.Verbose, "verbose", "v", false, "print more detail on stderr")

	root.AddCommand(newAgentMachineCmd(f, g), newCompletionCmd(f))
	return root
}

func newAgentMachineCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "agent-machine",
		Aliases: []string{"am"},
		Short:   "Governed Podman workspaces for AI coding agents",
		Long: `Run AI coding agents in a governed Podman workspace.

A profile (AgentMachineProfile) says which Podman host, image, mounts, tools, secrets,
network and limits a session may use. Every session runs in a container with all
capabilities dropped, no-new-privileges, a read-only root filesystem, your own uid and no
network unless the profile grants one, and leaves a signed evidence bundle behind.

Mutating commands (init, start, stop, shell, run, merge, discard) accept --dry-run, which prints exactly
what would happen and changes nothing.

` + exitCodesHelp,
		Example: `  # Is this workstation ready?
  sourceosctl agent-machine doctor

  # Write a profile for a repository, then review a session before running it
  sourceosctl agent-machine init --profile linux-rootless --repo ~/dev/app
  sourceosctl agent-machine run --tool claude-code --repo ~/dev/app --dry-run

  # Review what a session did on its branch, then take it or drop it
  sourceosctl agent-machine sessions
  sourceosctl agent-machine diff SESSION
  sourceosctl agent-machine merge SESSION --squash

  # Verify a session's evidence later
  sourceosctl agent-machine evidence verify BUNDLE_DIR --key agent.pub`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(
		newDoctorCmd(f, g),
		newInitCmd(f, g),
		newStartCmd(f, g),
		newStopCmd(f, g),
		newStatusCmd(f, g),
		newShellCmd(f, g),
		newTestCmd(f, g),
		newServeCmd(f, g),
		newNewCmd(f, g),
		newRunCmd(f, g),
		newUpCmd(f, g),
		newExecCmd(f, g),
		newDownCmd(f, g),
		newRmCmd(f, g),
		newSSHConfigCmd(f, g),
		newSSHProxyCmd(f, g),
		newSessionsCmd(f),
		newDiffCmd(f),
		newMergeCmd(f),
		newDiscardCmd(f),
		newFingerprintCmd(f, g),
		newEvidenceCmd(f, g),
		newImageCmd(f, g),
		newStateCmd(f, g),
		newKubeCmd(f, g),
		newWatchRepoCmd(f),
	)
	return cmd
}

// helpOnly makes a group command print its help when run bare.
func helpOnly(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// noArgs rejects stray words after a group command as a usage error naming the subcommands.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usageErrorf("unknown command %q for %q; run '%s --help' for the list", args[0], cmd.CommandPath(), cmd.CommandPath())
}

// exactArgs and friends wrap cobra's validators so their errors exit with the usage code.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return &UsageError{Err: err}
		}
		return nil
	}
}

func newCompletionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell to standard output.

Load it in the current shell, or install it where your shell looks for completions.`,
		Example: `  source <(sourceosctl completion bash)
  sourceosctl completion zsh > "${fpath[1]}/_sourceosctl"
  sourceosctl completion fish > ~/.config/fish/completions/sourceosctl.fish
  sourceosctl completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      usageArgs(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(f.IO.Out, true)
			case "zsh":
				return root.GenZshCompletion(f.IO.Out)
			case "fish":
				return root.GenFishCompletion(f.IO.Out, true)
			default:
				return root.GenPowerShellCompletionWithDesc(f.IO.Out)
			}
		},
	}
}
