package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/tpmkey"
)

func newEvidenceKeyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make the evidence signing key in a TPM 2.0, rotate it, or show which key signs",
		Long: `Sessions sign their evidence with this host's evidence key. By default it is a file
(keys/evidence.key, mode 0600), created on first use: anyone who can read it as you can
sign as this host. 'evidence key create --tpm' makes the key inside a TPM 2.0 instead
(Linux, /dev/tpmrm0): an ECDSA P-256 key the TPM creates and will not export (fixedTPM,
fixedParent, sensitiveDataOrigin); only its public key is written (keys/evidence.pub, for
auditors and cosign) with the name of the TPM and key (keys/evidence.tpm).

'evidence key rotate' replaces the key (with a file key, or with --tpm one in a TPM). The
session logs record the change, signed by both keys, so old bundles still verify and an
auditor holding either key can follow the chain; the old public key is kept in
keys/previous.`,
		Example: `  sourceosctl agent-machine evidence key create --tpm
  sourceosctl agent-machine evidence key rotate --tpm
  sourceosctl agent-machine evidence key show`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newEvidenceKeyCreateCmd(f), newEvidenceKeyRotateCmd(f), newEvidenceKeyShowCmd(f))
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
key or a TPM one): 'evidence key rotate --tpm' replaces a key, keeping what verifies the
bundles it signed.`,
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
			fmt.Fprintf(f.IO.Out, "✓ evidence key made in the TPM %s; sessions now sign with it\n  public key: %s (%s)\n", device, pub, agentmachine.FingerprintPEM(key.PublicPEM))
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
				fmt.Fprintf(f.IO.Out, "TPM-held key %s in %s (never leaves it)\npublic key: %s (%s)\n", ref.Label, ref.Device, pub, agentmachine.FingerprintPEM(key.PublicPEM))
			default:
				fmt.Fprintf(f.IO.Out, "file key %s (made on first use)\npublic key: %s\n", priv, pub)
			}
			previous, _ := filepath.Glob(filepath.Join(dirs.PreviousKeysDir(), "*.pub"))
			if len(previous) > 0 {
				fmt.Fprintf(f.IO.Out, "earlier keys (rotated away; they verify the bundles they signed):\n")
				for _, p := range previous {
					fmt.Fprintf(f.IO.Out, "  %s\n", p)
				}
			}
			return nil
		},
	}
}

func newEvidenceKeyRotateCmd(f *Factory) *cobra.Command {
	var opts agentmachine.RotateKeyOptions
	var logs []string
	cmd := &cobra.Command{
		Use:   "rotate [--tpm [--device /dev/tpmrm0]] [--log EVIDENCE_DIR]...",
		Short: "Replace this host's evidence key, recording the change in the session logs",
		Long: `Replace this host's evidence key with a new one: a file key, or with --tpm one made in a
TPM 2.0. Each session log records the rotation as an entry naming both keys, whose
checkpoint both keys sign: bundles signed before still verify, and 'evidence verify',
'evidence log verify' and 'evidence report' follow the chain from whichever key the auditor
holds. The old public key is kept in keys/previous; the old private key file is deleted (an
old TPM-held key is no longer named, and nothing signs with it).

The logs rotated are this host's evidence directory, its fallback in the temporary
directory, each profile's evidence.dir, and any --log directory. Run it when no session is
running: a session that ends after the rotation with the old key is not logged (it says
so). If any log cannot record the rotation, the key is not replaced; run it again to
finish.

After a rotation, give auditors the new public key (or have them keep a checkpoint): whoever
steals the old key could fork a log from before the rotation, which only the new key or a
kept checkpoint exposes.`,
		Example: `  sourceosctl agent-machine evidence key rotate
  sourceosctl agent-machine evidence key rotate --tpm
  sourceosctl agent-machine evidence key rotate --log ~/audit/team-evidence`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("device") && !opts.TPM {
				return usageErrorf("--device names the TPM for --tpm")
			}
			dirs, err := f.Dirs()
			if err != nil {
				return err
			}
			opts.Logs = rotationLogs(f, dirs, logs)
			opts.Password = []byte(f.Getenv("SOURCEOSCTL_KEY_PASSWORD"))
			r, err := dirs.RotateKey(opts)
			if err != nil {
				return err
			}
			out := f.IO.Out
			if r.Finished {
				fmt.Fprintf(out, "✓ finished an earlier rotation that stopped part-way (`evidence key show` names the key in force); run the command again for another rotation\n")
				return nil
			}
			fmt.Fprintf(out, "✓ evidence key rotated: %s → %s; sessions now sign with the new key\n", r.From, r.To)
			for _, l := range r.Logs {
				switch {
				case l.Skipped != "":
					fmt.Fprintf(out, "  %s: nothing to record (%s)\n", l.Dir, l.Skipped)
				case l.Already:
					fmt.Fprintf(out, "  %s: the rotation was already recorded\n", l.Dir)
				case l.Adopted > 0:
					fmt.Fprintf(out, "  %s: log started with its %d earlier bundles; rotation recorded at entry %d\n", l.Dir, l.Adopted, l.Index)
				default:
					fmt.Fprintf(out, "  %s: rotation recorded at entry %d\n", l.Dir, l.Index)
				}
			}
			_, pub := dirs.SigningKeyPaths()
			fmt.Fprintf(out, "  new public key: %s (give it to auditors)\n  old public key kept: %s\n", pub, r.Previous)
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.TPM, "tpm", false, "make the new key in a TPM 2.0")
	cmd.Flags().StringVar(&opts.Device, "device", tpmkey.DefaultDevice, "the TPM, with --tpm: a device, or a TPM emulator's Unix socket")
	cmd.Flags().StringArrayVar(&logs, "log", nil, "another evidence directory whose session log records the rotation (repeatable)")
	return cmd
}

// rotationLogs are the evidence directories a rotation records itself in: this host's, its
// fallback, each profile's own (profiles that do not load are passed over, with a warning)
// and those named, each once.
func rotationLogs(f *Factory, dirs agentmachine.Dirs, named []string) []string {
	out := []string{dirs.EvidenceDir(), filepath.Join(f.TempDir, fmt.Sprintf("sourceosctl-evidence-%d", f.UID))}
	paths, _ := filepath.Glob(filepath.Join(dirs.ProfilesDir(), "*.yaml"))
	for _, p := range paths {
		prof, err := f.LoadProfile(p)
		if err != nil {
			fmt.Fprintf(f.IO.ErrOut, "! profile %s does not load, so its evidence directory (if any) is not rotated: %v\n", p, cause.Root(err))
			continue
		}
		if d := prof.Spec.Evidence.Dir; d != "" {
			out = append(out, d)
		}
	}
	for _, n := range named {
		if abs, err := filepath.Abs(n); err == nil {
			out = append(out, abs)
		}
	}
	seen := map[string]bool{}
	uniq := out[:0]
	for _, d := range out {
		if d = filepath.Clean(d); !seen[d] {
			seen[d] = true
			uniq = append(uniq, d)
		}
	}
	return uniq
}
