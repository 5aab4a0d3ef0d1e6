package cli

import "github.com/spf13/cobra"

func newEvidenceCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Inspect and verify session evidence bundles",
		Long: `Every shell and run session leaves a signed evidence bundle: an in-toto statement in a
DSSE envelope (also as a Sigstore bundle) plus the artifacts it references by digest.`,
		Example: `  sourceosctl agent-machine evidence inspect ~/.local/state/sourceos/agent-machine/evidence
  sourceosctl agent-machine evidence verify BUNDLE_DIR --key agent.pub`,
		Args: noArgs,
		RunE: helpOnly,
	}
	var output string
	inspect := &cobra.Command{
		Use:   "inspect PATH|DIR",
		Short: "Summarise one bundle, or list every bundle in a directory (unverified unless --key)",
		Example: `  sourceosctl agent-machine evidence inspect BUNDLE_DIR
  sourceosctl agent-machine evidence inspect EVIDENCE_DIR -o json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			return &NotImplementedError{Command: "agent-machine evidence inspect", Planned: "bundle summaries"}
		},
	}
	addOutputFlag(inspect, &output, outTable, outJSON)
	var key string
	verify := &cobra.Command{
		Use:   "verify PATH [--key PUB.pem]",
		Short: "Verify a bundle's signature, statement, schema and artifact digests",
		Long: `Verify a bundle with the public key from --key or the configured key (never a key
found beside the bundle). Exits 0 only when every check holds, and otherwise names the
first check that failed.`,
		Example: `  sourceosctl agent-machine evidence verify BUNDLE_DIR --key agent.pub`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &NotImplementedError{Command: "agent-machine evidence verify", Planned: "signature and digest verification"}
		},
	}
	verify.Flags().StringVar(&key, "key", "", "public key `PUB.pem` to verify with")
	cmd.AddCommand(inspect, verify)
	return cmd
}
