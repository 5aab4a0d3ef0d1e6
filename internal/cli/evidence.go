package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

func newEvidenceCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Inspect and verify session evidence bundles",
		Long: `Every shell and run session leaves a signed evidence bundle: an in-toto Statement in a
DSSE envelope, stored as a Sigstore bundle (attestation.sigstore.json) and as the bare
envelope (attestation.intoto.json), beside artifacts/ (session log, policy, plan, podman
inspect, work-tree diff) that the statement references by SHA-256.

Stock cosign verifies a bundle too:
  cosign verify-blob-attestation --key agent.pub --bundle BUNDLE/attestation.sigstore.json \
    --type ` + evidence.PredicateType + ` --insecure-ignore-tlog BUNDLE/artifacts/session.log`,
		Example: `  sourceosctl agent-machine evidence inspect ~/.local/state/sourceos/agent-machine/evidence
  sourceosctl agent-machine evidence verify BUNDLE_DIR --key agent.pub`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newEvidenceInspectCmd(f), newEvidenceVerifyCmd(f), newEvidenceLogCmd(f), newEvidenceReportCmd(f), newEvidenceKeyCmd(f))
	return cmd
}

type evidenceOptions struct {
	IO *IOStreams
	// HostKey is this host's own evidence public key, the default for verify.
	HostKey func() (string, error)
	// HostEvidence is this host's default evidence directory, the default for the log's commands.
	HostEvidence func() (string, error)

	Path   string
	Key    string
	Output string
	Strict bool
	Since  string
	Fast   bool
}

func newEvidenceOptions(f *Factory) *evidenceOptions {
	return &evidenceOptions{IO: f.IO, HostKey: func() (string, error) {
		dirs, err := f.Dirs()
		if err != nil {
			return "", err
		}
		_, pub := dirs.SigningKeyPaths()
		return pub, nil
	}, HostEvidence: func() (string, error) {
		dirs, err := f.Dirs()
		if err != nil {
			return "", err
		}
		return dirs.EvidenceDir(), nil
	}}
}

func (o *evidenceOptions) validate() error { return validateOutput(o.Output, outTable, outJSON) }

func newEvidenceVerifyCmd(f *Factory) *cobra.Command {
	opts := newEvidenceOptions(f)
	opts.Output = outTable
	cmd := &cobra.Command{
		Use:   "verify BUNDLE_DIR [--key PUB.pem]",
		Short: "Verify a bundle's signature, statement, schema and artifact digests",
		Long: `Verify a bundle with the public key from --key, or else this host's own evidence key
(never a key found beside the bundle). The checks, in order: the Sigstore bundle parses;
the bare envelope matches it; the DSSE signature verifies; the verified payload is a strict
in-toto Statement v1 with our predicate type and a predicate valid against its schema; every
artifact exists and matches its SHA-256; no artifact is left unsigned. Exits 0 only when
all hold, otherwise 1, naming the first check that failed.

With --strict, a record whose container changed while the tool ran (drift: inspected again
at the end and compared with the plan) or could not be inspected again fails too.

Then the bundle's place in the session log: its log-inclusion.json proves it is an entry of
a checkpoint signed by the same key, and the log beside it (EVIDENCE/log) still holds it
there under its latest checkpoint. A bundle in no log (written before the log existed) is
reported, and fails only with --strict.`,
		Example: `  sourceosctl agent-machine evidence verify BUNDLE_DIR --key agent.pub`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			if err := opts.validate(); err != nil {
				return err
			}
			return runEvidenceVerify(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "public key `PUB.pem` to verify with (default: this host's evidence key)")
	cmd.Flags().BoolVar(&opts.Strict, "strict", false, "also fail on drift (the container changed while the tool ran) and when the bundle is in no session log")
	return cmd
}

// VerificationFailedError is a bundle that did not verify; it exits 1.
type VerificationFailedError struct{ Err error }

func (e *VerificationFailedError) Error() string { return "verification FAILED: " + e.Err.Error() }
func (e *VerificationFailedError) Unwrap() error { return e.Err }

// keyPath is --key, or this host's own key; never a key found beside the bundle.
func (o *evidenceOptions) keyPath() (string, error) {
	if o.Key != "" {
		return o.Key, nil
	}
	pub, err := o.HostKey()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(pub); err != nil {
		return "", usageErrorf("no --key given and this host has no evidence key at %s: pass the signer's public key with --key PUB.pem", pub)
	}
	return pub, nil
}

func runEvidenceVerify(opts *evidenceOptions) error {
	if !evidence.IsBundle(opts.Path) {
		return &agentmachine.InputError{Err: fmt.Errorf("%s is not an evidence bundle (no %s)", opts.Path, evidence.BundleFile)}
	}
	kp, err := opts.keyPath()
	if err != nil {
		return err
	}
	v, err := evidence.LoadPublicKey(kp)
	if err != nil {
		return &agentmachine.InputError{Flag: "--key", Err: err}
	}
	// The log beside the bundle says which key signed it: after a rotation, an earlier key
	// that its rotations tie to the one given.
	place, logErr := evidencelog.VerifyBundle(opts.Path, v)
	signer, by := v, kp
	if logErr == nil && place.Signer != nil && !sameKey(place.Signer, v) {
		signer = place.Signer
		by = fmt.Sprintf("the key %s, which the session log's rotations tie to %s", fingerprintOf(signer), kp)
	}
	got, err := evidence.Verify(opts.Path, signer)
	if err != nil {
		return &VerificationFailedError{Err: err}
	}
	var notLogged *evidencelog.NotLoggedError
	if logErr != nil && (!errors.As(logErr, &notLogged) || opts.Strict) {
		return &VerificationFailedError{Err: &evidence.VerifyError{Check: checkLog, Detail: logErr.Error()}}
	}
	if logErr == nil && place.LatestSize == 0 && opts.Strict {
		return &VerificationFailedError{Err: &evidence.VerifyError{Check: checkLog,
			Detail: "no session log beside the bundle to check it against (moved out of its evidence directory, or the log was deleted)"}}
	}
	p := got.Statement.Predicate
	drift := driftProblem(p.Checks)
	if drift != "" && opts.Strict {
		return &VerificationFailedError{Err: &evidence.VerifyError{Check: checkDrift, Detail: drift}}
	}
	fmt.Fprintf(opts.IO.Out, "✓ verified %s with %s\n  session %s: %s, %s, %d subjects\n", opts.Path, by, p.Session.ID, p.Tool.Name, p.Session.Outcome, len(got.Statement.Subject))
	if drift != "" {
		fmt.Fprintf(opts.IO.Out, "  ! %s (--strict makes this a failure)\n", textsafe.String(drift))
	}
	switch {
	case logErr != nil:
		fmt.Fprintf(opts.IO.Out, "  ! %s (--strict makes this a failure)\n", logErr)
	case place.LatestSize == 0:
		fmt.Fprintf(opts.IO.Out, "  session log: entry %d of a checkpoint of %d entries, signed by this key (its log is not beside it: not checked further)\n", place.Index, place.TreeSize)
	default:
		fmt.Fprintf(opts.IO.Out, "  session log: entry %d; the log's latest checkpoint (%d entries) still holds it\n", place.Index, place.LatestSize)
	}
	return nil
}

// sameKey says two verifiers hold the same public key.
func sameKey(a, b signature.Verifier) bool { return fingerprintOf(a) == fingerprintOf(b) }

func fingerprintOf(v signature.Verifier) string {
	pub, err := v.PublicKey()
	if err != nil {
		return "unreadable"
	}
	return evidencelog.Fingerprint(pub)
}

// checkLog is the check that a bundle is where the session log says; checkDrift that the
// container was as planned at the end too.
const (
	checkLog   = "log"
	checkDrift = "drift"
)

// driftProblem says what the record's end-of-session inspection found, when it was not
// "none": the container changed while the tool ran, or it could not be checked.
func driftProblem(c *evidence.Checks) string {
	switch {
	case c == nil || c.Drift == "" || c.Drift == agentmachine.DriftNone:
		return ""
	case c.Drift == agentmachine.DriftDiffers:
		return "the container changed while the tool ran: " + strings.Join(c.DriftDifferences, "; ")
	}
	return "the container was not inspected again at the end: " + strings.Join(c.DriftDifferences, "; ")
}

func newEvidenceInspectCmd(f *Factory) *cobra.Command {
	opts := newEvidenceOptions(f)
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE_DIR|EVIDENCE_DIR [--key PUB.pem] [-o table|json]",
		Short: "Summarise one bundle, or list every bundle in a directory (unverified unless --key)",
		Long: `Print a bundle for people: what ran, where, when, with which image, mounts, policy and
code. Without --key nothing is checked and the output says UNVERIFIED; with --key the
bundle is verified first. Given a directory of bundles, list them newest first.`,
		Example: `  sourceosctl agent-machine evidence inspect BUNDLE_DIR
  sourceosctl agent-machine evidence inspect ~/.local/state/sourceos/agent-machine/evidence
  sourceosctl agent-machine evidence inspect BUNDLE_DIR --key agent.pub -o json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			if err := opts.validate(); err != nil {
				return err
			}
			return runEvidenceInspect(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "verify with public key `PUB.pem` first")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func runEvidenceInspect(opts *evidenceOptions) error {
	io := opts.IO
	var verifier signature.Verifier
	if opts.Key != "" {
		var err error
		if verifier, err = evidence.LoadPublicKey(opts.Key); err != nil {
			return &agentmachine.InputError{Flag: "--key", Err: err}
		}
	}
	items, single, err := evidence.Inspect(opts.Path, verifier)
	if err != nil {
		return &agentmachine.InputError{Err: err}
	}
	if len(items) == 0 {
		fmt.Fprintf(io.ErrOut, "No evidence bundles in %s.\n", opts.Path)
	}
	switch {
	case opts.Output == outJSON && single:
		err = writeJSON(io.Out, items[0])
	case opts.Output == outJSON:
		err = writeJSON(io.Out, items)
	case single:
		err = writeBundleSummary(io.Out, items[0])
	case len(items) > 0:
		err = writeBundleTable(io.Out, items)
	}
	if err != nil {
		return err
	}
	var failed []error
	for _, it := range items {
		if it.Error != "" {
			failed = append(failed, fmt.Errorf("%s: %s", filepath.Base(it.Dir), it.Error))
		}
	}
	if len(failed) > 0 && opts.Key != "" {
		return &VerificationFailedError{Err: errors.Join(failed...)}
	}
	return errors.Join(failed...)
}

func status(it evidence.Inspected) string {
	switch {
	case it.Error != "" && it.Predicate == nil:
		return "UNREADABLE"
	case it.Error != "":
		return "FAILED"
	case it.Verified:
		return "VERIFIED"
	}
	return "UNVERIFIED"
}

func writeBundleSummary(w io.Writer, it evidence.Inspected) error {
	if it.Predicate == nil {
		_, err := fmt.Fprintf(w, "%s  %s\n  %s\n", status(it), textsafe.String(it.Dir), textsafe.String(it.Error))
		return err
	}
	p := it.Predicate
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Every value may hold what the agent wrote (a host it asked for, a branch, a command):
	// escaped, it cannot act on the reviewer's terminal.
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, textsafe.String(v)) }
	head := status(it)
	if head == "UNVERIFIED" {
		head += " (nothing checked: pass --key PUB.pem to verify)"
	} else if head == "FAILED" {
		head += ": " + it.Error
	}
	row("Status", head)
	row("Bundle", it.Dir)
	row("Session", p.Session.ID)
	exit := "-"
	if p.Session.ExitCode != nil {
		exit = fmt.Sprint(*p.Session.ExitCode)
	}
	row("Outcome", fmt.Sprintf("%s (exit %s)%s", p.Session.Outcome, exit, optional(", interrupted by ", p.Session.Cause)))
	row("When", fmt.Sprintf("%s → %s (self-asserted)", p.Session.StartedOn, p.Session.FinishedOn))
	row("Tool", p.Tool.Name+" — "+strings.Join(p.Command, " "))
	row("User", p.User)
	row("Repository", fmt.Sprintf("%s at %s%s", p.Repo.Path, orNone(p.Git.Before.Commit), dirty(p.Git.Before.Dirty)))
	if p.Git.After.Commit != p.Git.Before.Commit || p.Git.After.Dirty != p.Git.Before.Dirty {
		row("  afterwards", orNone(p.Git.After.Commit)+dirty(p.Git.After.Dirty))
	}
	row("Image", fmt.Sprintf("%s id %.12s digest %s", p.Image.Ref, p.Image.ID, orNone(p.Image.Digest)))
	for i, m := range p.Mounts {
		label := ""
		if i == 0 {
			label = "Mounts"
		}
		row(label, fmt.Sprintf("%s -> %s (%s)", m.Source, m.Target, strings.Join(m.Options, ",")))
	}
	row("Network", p.Network)
	if e := p.Egress; e != nil {
		writeEgressSummary(row, e)
	}
	row("Capabilities", "drop "+strings.Join(p.Capabilities.Drop, ",")+", add "+orNone(strings.Join(p.Capabilities.Add, ",")))
	row("Security", strings.Join(p.SecurityOptions, ", "))
	if c := p.Checks; c != nil {
		row("Checks", checksSummary(c))
	}
	row("Secrets", orNone(strings.Join(p.Secrets, ", ")))
	row("Profile", fmt.Sprintf("%s (sha256:%.12s)", p.Profile.Name, p.Profile.SHA256))
	row("Policy hash", p.PolicyHash)
	row("Host", fmt.Sprintf("%s/%s, Podman %s, rootless %v, sourceosctl %s", p.Host.OS, p.Host.Arch, orNone(p.Host.PodmanServer), p.Host.Rootless, p.Host.Sourceosctl))
	for i, s := range it.Subjects {
		label := ""
		if i == 0 {
			label = "Subjects"
		}
		for alg, d := range s.Digest {
			row(label, fmt.Sprintf("%s %s:%.16s…", s.Name, alg, d))
		}
	}
	return tw.Flush()
}

// writeEgressSummary shows the gateway's account: the totals, then each destination.
func writeEgressSummary(row func(k, v string), e *evidence.Egress) {
	itemized := "every attempt"
	if e.Itemized < e.Attempts {
		itemized = fmt.Sprintf("the first %d attempts", e.Itemized)
	}
	row("Egress", fmt.Sprintf("gateway: %d attempts, %d allowed, %d denied, %d failed (%s: artifact %s)", e.Attempts, e.Allowed, e.Denied, e.Failed, itemized, e.Log))
	row("", fmt.Sprintf("%d connections to the gateway; %d requests refused by its parser before naming a destination (sent nowhere)", e.Connections, e.Unparsed))
	if e.Unaccounted != "" {
		row("", "UNACCOUNTED: "+e.Unaccounted)
	}
	dest := func(name string, d evidence.EgressDestination) {
		row("", fmt.Sprintf("%s  allowed %d, denied %d, failed %d; %d bytes out, %d in", name, d.Allowed, d.Denied, d.Failed, d.BytesOut, d.BytesIn))
	}
	for _, d := range e.Destinations {
		name := net.JoinHostPort(d.Host, fmt.Sprint(d.Port))
		if d.Host == "" {
			name = "(no host named)"
		}
		dest(name, d)
	}
	if o := e.OtherDestinations; o != nil {
		dest("all other destinations", *o)
	}
	for _, in := range e.Injected {
		var per []string
		for _, h := range in.PerHost {
			per = append(per, fmt.Sprintf("%s ×%d", h.Host, h.Count))
		}
		row("", fmt.Sprintf("secret %s injected into %d requests (%s); declared for %s", textsafe.String(in.Name), in.Requests,
			orDashString(strings.Join(per, ", ")), strings.Join(in.Hosts, ", ")))
	}
}

func writeBundleTable(w io.Writer, items []evidence.Inspected) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tSESSION\tTOOL\tOUTCOME\tEXIT\tREPOSITORY\tCOMMIT")
	for _, it := range items {
		if it.Predicate == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\n", status(it), filepath.Base(it.Dir))
			continue
		}
		p := it.Predicate
		exit := "-"
		if p.Session.ExitCode != nil {
			exit = fmt.Sprint(*p.Session.ExitCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.12s\n", status(it), textsafe.String(p.Session.ID), textsafe.String(p.Tool.Name), textsafe.String(p.Session.Outcome), exit, textsafe.String(p.Repo.Path), textsafe.String(orNone(p.Git.Before.Commit)))
	}
	return tw.Flush()
}

func optional(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func dirty(d bool) string {
	if d {
		return " (uncommitted changes)"
	}
	return ""
}

// checksSummary is how the container was checked before the tool started, in one line.
func checksSummary(c *evidence.Checks) string {
	inspect := "inspect " + c.Inspect
	if len(c.InspectDifferences) > 0 {
		inspect += " (" + strings.Join(c.InspectDifferences, "; ") + ")"
	}
	inside := "inside " + c.Inside
	if c.Helper != "" {
		inside += fmt.Sprintf(" (sourceos-helper %.19s)", c.Helper)
	}
	if len(c.InsideDifferences) > 0 {
		inside += ": " + strings.Join(c.InsideDifferences, "; ")
	}
	out := inspect + ", " + inside
	if c.Drift != "" {
		out += ", at the end " + c.Drift
		if len(c.DriftDifferences) > 0 {
			out += " (" + strings.Join(c.DriftDifferences, "; ") + ")"
		}
	}
	return out
}
