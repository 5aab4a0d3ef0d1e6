package cli

import "github.com/spf13/cobra"

type doctorOptions struct {
	IO      *IOStreams
	Globals *GlobalOptions

	Repo   string
	Output string
}

func newDoctorCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &doctorOptions{IO: f.IO, Globals: g}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this workstation can run governed agent sessions (read-only)",
		Long: `Check the host, Podman, the Podman machine or rootless set-up, git, the repository,
the profile, the signing key and the image. Each check says ok, warn or fail and, when not
ok, the exact command that fixes it. doctor never changes anything.`,
		Example: `  sourceosctl agent-machine doctor
  sourceosctl agent-machine doctor --repo ~/dev/app -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
				return err
			}
			return &NotImplementedError{Command: "agent-machine doctor", Planned: "read-only checks of host, Podman, machine, git, repo, profile, key and image"}
		},
	}
	cmd.Flags().StringVar(&opts.Repo, "repo", "", "repository `PATH` to check")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}
