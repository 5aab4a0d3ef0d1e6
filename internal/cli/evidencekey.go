package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/tpmkey"
)

func newEvidenceKeyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make the evidence signing key in a TPM 2.0, or show which key signs",
		Long: `Sessions sign their evidence with this host's evidence key. By default it is a file
(keys/evidence.key, mode 0600), created on first use: anyone who can read it as you can
sign as this host. 'evidence key create --tpm' makes the key inside a TPM 2.0 instead
(Linux, /dev/tpmrm0): an ECDSA P-256 key the TPM creates and will not export (fixedTPM,
fixedParent, sensitiveDataOrigin); only its public key is written (keys/evidence.pub, for
auditors and cosign) with the name of the TPM and key (keys/evidence.tpm).`,
		Example: `  sourceosctl agent-machine evidence key create --tpm
  sourceosctl agent-machine evidence key show`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newEvidenceKeyCreateCmd(f), newEvidenceKeyShowCmd(f))
	return cmd
}

func newEvidenceKeyCreateCmd(f *Factory) *cobra.Command {
	var tpm bool
	var device string
	cmd := &cobra.Command{
		Use:   "create --tpm [--device /dev/tpmrm0]",
		Short: "Make this host's evidence key in a TPM 2.0",
		Long: `Make this host's evidence key inside a TPM 2.0 and sign every later session with it. The
TPM derives the key from its owner hierarchy and a label written to keys/evidence.tpm;
the key never leaves the TPM. Refused when this host already has an evidence key (a file
key or a TPM one): replacing a key must keep the old public key for the bundles it signed,
and key rotation is not built yet.`,
		Example: `  sourceosctl agent-machine evidence key create --tpm
  sourceosctl agent-machine evidence key create --tpm --device /run/swtpm/tpm.sock`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !tpm {
				return usageErrorf("only a TPM-held key is made by this command (--tpm); a file key is made on first use")
			}
			dirs, err := f.Dirs()
			if err != nil {
				return err
			}
			key, err := dirs.CreateTPMKey(device)
			if err != nil {
				return err
			}
			defer key.Close()
			_, pub := dirs.SigningKeyPaths()
			fmt.Fprintf(f.IO.Out, "✓ evidence key made in the TPM %s; sessions now sign with it\n  public key: %s (%s)\n", device, pub, keyFingerprint(key.PublicPEM))
			return nil
		},
	}
	cmd.Flags().BoolVar(&tpm, "tpm", false, "make the key in a TPM 2.0")
	cmd.Flags().StringVar(&device, "device", tpmkey.DefaultDevice, "the TPM: a device, or a TPM emulator's Unix socket")
	return cmd
}

func newEvidenceKeyShowCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "show",
		Short:   "Say which key signs this host's evidence",
		Example: `  sourceosctl agent-machine evidence key show`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dirs, err := f.Dirs()
			if err != nil {
				return err
			}
			priv, pub := dirs.SigningKeyPaths()
			ref, found, err := dirs.ReadTPMKeyRef()
			switch {
			case err != nil:
				return &agentmachine.InputError{Err: err}
			case found:
				key, err := agentmachine.LoadTPMKey(ref)
				if err != nil {
					return &agentmachine.InputError{Err: err, Fix: "check that " + ref.Device + " is there and yours to use"}
				}
				defer key.Close()
				fmt.Fprintf(f.IO.Out, "TPM-held key %s in %s (never leaves it)\npublic key: %s (%s)\n", ref.Label, ref.Device, pub, keyFingerprint(key.PublicPEM))
			default:
				fmt.Fprintf(f.IO.Out, "file key %s (made on first use)\npublic key: %s\n", priv, pub)
			}
			return nil
		},
	}
}

// keyFingerprint is a public key's SHA-256 over its DER form, for people to compare.
func keyFingerprint(pubPEM []byte) string {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return "unreadable"
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "unreadable"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
