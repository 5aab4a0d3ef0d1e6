package cli

import "github.com/spf13/cobra"

type startOptions struct {
	IO      *IOStreams
	Globals *GlobalOptions

	DryRun bool
	Force  bool
}

func newStartCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &startOptions{IO: f.IO, Globals: g}
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start the Podman machine or API service the profile needs",
		Long: `Make sure Podman can run sessions: on macOS and Windows start the profile's Podman
machine (never creating one: if it is absent, the exact 'podman machine init' command is
printed); on Linux make sure the Podman API socket is up.`,
		Example: `  sourceosctl agent-machine start
  sourceosctl agent-machine start --dry-run`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &NotImplementedError{Command: "agent-machine start", Planned: "start the Podman machine or API socket"}
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print what would be started and change nothing")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop another running machine that this tool did not start")
	return cmd
}

type stopOptions struct {
	IO      *IOStreams
	Globals *GlobalOptions

	DryRun  bool
	Machine bool
	Force   bool
}

func newStopCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &stopOptions{IO: f.IO, Globals: g}
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop running agent sessions (and, with --machine, the Podman machine)",
		Long: `Stop this tool's running session containers, found by their labels. With --machine,
also stop the profile's Podman machine on macOS and Windows.`,
		Example: `  sourceosctl agent-machine stop --dry-run
  sourceosctl agent-machine stop --machine`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &NotImplementedError{Command: "agent-machine stop", Planned: "stop session containers and, with --machine, the machine"}
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would stop and change nothing")
	cmd.Flags().BoolVar(&opts.Machine, "machine", false, "also stop the profile's Podman machine")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "stop the machine even if this tool did not start it")
	return cmd
}

type statusOptions struct {
	IO      *IOStreams
	Globals *GlobalOptions

	Output string
}

func newStatusCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &statusOptions{IO: f.IO, Globals: g}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the machine or socket, running sessions and the image",
		Example: `  sourceosctl agent-machine status
  sourceosctl agent-machine status -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
				return err
			}
			return &NotImplementedError{Command: "agent-machine status", Planned: "machine, sessions and image status"}
		},
	}
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}
