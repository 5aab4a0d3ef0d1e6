package cli

import "github.com/spf13/cobra"

func newFingerprintCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "fingerprint [--repo PATH]",
		Short: "Print this host's AgentMachineFingerprint as JSON",
		Long: `Print one JSON document describing this host for evidence: OS, architecture, kernel,
sourceosctl, Podman client and server, rootless or rootful, the machine, git and nix, the
profile and its hash, and the image. It holds no secrets and no environment values.`,
		Example: `  sourceosctl agent-machine fingerprint
  sourceosctl agent-machine fingerprint --repo ~/dev/app > host.json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &NotImplementedError{Command: "agent-machine fingerprint", Planned: "host fingerprint JSON"}
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository `PATH` to describe")
	return cmd
}
