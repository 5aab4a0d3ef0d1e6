package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

func newEvidenceLogCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Verify the session log of an evidence directory, or print its checkpoint to keep",
		Long: `Every bundle a session writes is appended to its evidence directory's session log
(EVIDENCE/log): an append-only Merkle tree (RFC 6962) over the bundles in the order sessions
ended, with a checkpoint (C2SP signed note: origin, size, root hash) signed by the evidence
key after each append, and each bundle's inclusion proof beside it (log-inclusion.json).

The log shows what single bundles cannot: that one was deleted, replaced (by another
session's, an older one or a re-signed one), reordered or inserted. Whoever can read a file
key can rebuild a whole log, though: keep a checkpoint somewhere the host cannot write
(print it with 'evidence log checkpoint'), and later 'evidence log verify --since' proves
that the log still holds everything it held then.`,
		Example: `  sourceosctl agent-machine evidence log checkpoint > ~/audit/agent-machine.checkpoint
  sourceosctl agent-machine evidence log verify --key agent.pub --since ~/audit/agent-machine.checkpoint`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newEvidenceLogVerifyCmd(f), newEvidenceLogCheckpointCmd(f))
	return cmd
}

func newEvidenceLogVerifyCmd(f *Factory) *cobra.Command {
	opts := newEvidenceOptions(f)
	cmd := &cobra.Command{
		Use:   "verify [EVIDENCE_DIR] [--key PUB.pem] [--since CHECKPOINT] [-o table|json]",
		Short: "Check the whole session log and every bundle's place in it",
		Long: `Check an evidence directory's session log (default: this host's evidence directory) with
the public key from --key, or else this host's evidence key:

  the latest checkpoint is signed by the key, and the entries hash to its root;
  every entry's bundle is present (else DELETED) and is the one appended (else REPLACED);
  every bundle's own inclusion proof verifies and puts it where the log does (else
  REORDERED or INCLUSION); no bundle directory is missing from the log (else INSERTED);
  no entry is named twice (DUPLICATED) or left outside every signed checkpoint
  (UNCOMMITTED); the checkpoints stored with the bundles are still extended by the log
  (else EDITED: its history was rewritten);
  with --since, the log still extends the checkpoint you kept (else SINCE).

With --fast the bundles are not read: the log, its signature, the names and digests its
entries commit to and which bundles are present are checked (deleted, inserted, edited,
since), in a fraction of the time on a large log; a bundle replaced in place goes unseen.

Each problem is named with the entry and bundle it concerns. The bundles' contents
(signatures, artifacts) are checked by 'evidence verify' and 'evidence inspect --key'.
Exits 0 when nothing is wrong, 1 when something is.`,
		Example: `  sourceosctl agent-machine evidence log verify
  sourceosctl agent-machine evidence log verify /srv/evidence --key agent.pub --since kept.checkpoint -o json`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Path = args[0]
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runEvidenceLogVerify(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "public key `PUB.pem` to verify with (default: this host's evidence key)")
	cmd.Flags().StringVar(&opts.Since, "since", "", "a checkpoint `FILE` kept earlier ('evidence log checkpoint'): prove the log still extends it")
	cmd.Flags().BoolVar(&opts.Fast, "fast", false, "check the log and which bundles are present without reading each bundle (a bundle replaced in place goes unseen)")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

// logTarget is the evidence directory and the verifier the log commands use.
func (o *evidenceOptions) logTarget() (string, signature.Verifier, string, error) {
	dir := o.Path
	if dir == "" {
		var err error
		if dir, err = o.HostEvidence(); err != nil {
			return "", nil, "", err
		}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", nil, "", &agentmachine.InputError{Err: fmt.Errorf("%s is not an evidence directory: %v", dir, errOrNotDir(err))}
	}
	kp, err := o.keyPath()
	if err != nil {
		return "", nil, "", err
	}
	v, err := evidence.LoadPublicKey(kp)
	if err != nil {
		return "", nil, "", &agentmachine.InputError{Flag: "--key", Err: err}
	}
	return dir, v, kp, nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return errors.Unwrap(err)
	}
	return errors.New("not a directory")
}

func runEvidenceLogVerify(opts *evidenceOptions) error {
	dir, v, kp, err := opts.logTarget()
	if err != nil {
		return err
	}
	var since []byte
	if opts.Since != "" {
		if since, err = os.ReadFile(opts.Since); err != nil {
			return &agentmachine.InputError{Flag: "--since", Err: err}
		}
	}
	res, err := evidencelog.Verify(dir, v, evidencelog.VerifyOptions{Since: since, Fast: opts.Fast})
	var sinceErr *evidencelog.SinceError
	var noLog *evidencelog.NoLogError
	switch {
	case errors.As(err, &sinceErr):
		return &agentmachine.InputError{Flag: "--since", Err: fmt.Errorf("%s: %v", opts.Since, sinceErr.Err),
			Fix: "give a checkpoint printed by 'evidence log checkpoint' for this log, and the key that signed it"}
	case errors.As(err, &noLog):
		return &agentmachine.InputError{Err: err}
	case err != nil:
		return err
	}
	if opts.Output == outJSON {
		if err := writeJSON(opts.IO.Out, res); err != nil {
			return err
		}
	} else {
		writeLogResult(opts, res, kp)
	}
	if !res.OK() {
		return &VerificationFailedError{Err: fmt.Errorf("the session log of %s has %d problem(s)", dir, len(res.Problems))}
	}
	return nil
}

func writeLogResult(opts *evidenceOptions, res *evidencelog.Result, kp string) {
	out := opts.IO.Out
	mark := "✓"
	if !res.OK() {
		mark = "✗"
	}
	fmt.Fprintf(out, "%s session log of %s, checked with %s\n", mark, res.Dir, kp)
	fmt.Fprintf(out, "  %d entries under the latest signed checkpoint (origin %s, root %.16s…); %d bundle directories\n", res.Size, orNone(res.Origin), orNone(res.Root), res.Bundles)
	if len(res.Keys) > 1 {
		fmt.Fprintf(out, "  signed by %d keys in turn (each rotation signed by both): %s\n", len(res.Keys), strings.Join(res.Keys, " → "))
	}
	if s := res.Since; s != nil {
		verdict := "the log still extends it"
		if !s.Consistent {
			verdict = "NOT extended by the log"
		}
		fmt.Fprintf(out, "  kept checkpoint %s (%d entries, root %.16s…): %s\n", opts.Since, s.Size, s.Root, verdict)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(out, "  %s\n", textsafe.String(p.String()))
	}
}

func newEvidenceLogCheckpointCmd(f *Factory) *cobra.Command {
	opts := newEvidenceOptions(f)
	cmd := &cobra.Command{
		Use:   "checkpoint [EVIDENCE_DIR] [--key PUB.pem]",
		Short: "Print the session log's latest signed checkpoint, for an auditor to keep",
		Long: `Print the latest checkpoint of an evidence directory's session log (default: this host's),
after checking it is signed by the key from --key or this host's evidence key. Keep it
where this host cannot write (another machine, a ticket, a commit): a later
'evidence log verify --since FILE' proves the log still holds every session it held when
you kept it, even against someone who could read the signing key and rebuild the log.`,
		Example: `  sourceosctl agent-machine evidence log checkpoint > ~/audit/$(date +%F).checkpoint`,
		Args:    usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Path = args[0]
			}
			return runEvidenceLogCheckpoint(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "public key `PUB.pem` the checkpoint must be signed by (default: this host's evidence key)")
	return cmd
}

func runEvidenceLogCheckpoint(opts *evidenceOptions) error {
	dir, v, _, err := opts.logTarget()
	if err != nil {
		return err
	}
	signed, err := evidencelog.Latest(dir)
	if errors.Is(err, os.ErrNotExist) {
		return &agentmachine.InputError{Err: &evidencelog.NoLogError{Dir: dir}}
	} else if err != nil {
		return &VerificationFailedError{Err: err}
	}
	cp, err := evidencelog.OpenCheckpoint(signed, v)
	if err != nil {
		return &VerificationFailedError{Err: fmt.Errorf("the latest checkpoint of %s: %v", dir, err)}
	}
	if _, err := opts.IO.Out.Write(signed); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "checkpoint of %d entries; keep it where this host cannot write, and verify later with --since\n", cp.Size)
	return nil
}
