package cli

import (
	"bytes"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/evidencereport"
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

type reportOptions struct {
	*evidenceOptions
	HTML string
}

func newEvidenceReportCmd(f *Factory) *cobra.Command {
	opts := &reportOptions{evidenceOptions: newEvidenceOptions(f)}
	opts.Output = outTable
	cmd := &cobra.Command{
		Use:   "report [EVIDENCE_DIR] [--key PUB.pem] [--html FILE | -o json]",
		Short: "Verify every bundle and the session log, and report the sessions for people or scripts",
		Long: `Verify every bundle of an evidence directory (default: this host's) with the public key from
--key, or else this host's evidence key, check its session log, and report: every
verification failure first, then a summary and a timeline of the sessions — outcome, tool,
repository and branch, image, network and the gateway's denials, secrets by name, drift.

--html FILE writes one self-contained page (inline CSS, no scripts, nothing fetched) to
open in any browser or attach to an audit; -o json writes the same for scripts
(schemas/agent-machine-report.schema.json); without either, a summary is printed. Exits 1
when any bundle or the log fails verification (after writing the report), else 0.`,
		Example: `  sourceosctl agent-machine evidence report --key agent.pub --html report.html
  sourceosctl agent-machine evidence report /srv/evidence --key agent.pub -o json | jq '.failures'`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Path = args[0]
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if opts.HTML != "" && opts.Output == outJSON {
				return usageErrorf("--html and -o json each write the whole report: choose one")
			}
			return runEvidenceReport(opts, f)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "public key `PUB.pem` to verify with (default: this host's evidence key)")
	cmd.Flags().StringVar(&opts.HTML, "html", "", "write the report as a self-contained HTML page to `FILE`")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func runEvidenceReport(opts *reportOptions, f *Factory) error {
	dir, v, kp, err := opts.logTarget()
	if err != nil {
		return err
	}
	r, err := evidencereport.Build(dir, v, kp, f.Now())
	if err != nil {
		return &agentmachine.InputError{Err: err}
	}
	switch {
	case opts.Output == outJSON:
		if err := writeJSON(opts.IO.Out, r); err != nil {
			return err
		}
	case opts.HTML != "":
		var page bytes.Buffer
		if err := evidencereport.WriteHTML(&page, r); err != nil {
			return err
		}
		if err := atomicfile.Write(opts.HTML, page.Bytes(), 0o644, atomicfile.Options{}); err != nil {
			return &agentmachine.InputError{Flag: "--html", Err: err}
		}
		fmt.Fprintf(opts.IO.ErrOut, "Wrote %s: %d sessions, %d verification failure(s)\n", opts.HTML, r.Summary.Bundles, len(r.Failures))
	default:
		writeReportSummary(opts.IO.Out, r)
	}
	if len(r.Failures) > 0 {
		return &VerificationFailedError{Err: fmt.Errorf("%d verification failure(s) in %s", len(r.Failures), dir)}
	}
	return nil
}

func writeReportSummary(w io.Writer, r *evidencereport.Report) {
	s := r.Summary
	fmt.Fprintf(w, "%s: %d sessions, %d verified, %d failed; session log %s", r.Dir, s.Bundles, s.Verified, s.Failed, s.Log)
	if s.LogEntries > 0 {
		fmt.Fprintf(w, " (%d entries)", s.LogEntries)
	}
	fmt.Fprintf(w, "; %d drifted; %d network denials\n", s.Drifted, s.Denials)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAILED %s %s: %s\n", f.Check, textsafe.String(f.Bundle), textsafe.String(f.Detail))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tSESSION\tOUTCOME\tTOOL\tREPOSITORY\tBRANCH\tDENIED\tSTATUS")
	for _, x := range r.Sessions {
		status := "verified"
		if !x.Verified {
			status = "NOT VERIFIED"
		}
		if x.Drift == agentmachine.DriftDiffers {
			status += ", drift"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", textsafe.String(orDashString(x.Started)), textsafe.String(x.Bundle), textsafe.String(orDashString(x.Outcome)),
			textsafe.String(orDashString(x.Tool)), textsafe.String(orDashString(x.Repo)), textsafe.String(orDashString(x.Branch)), x.Denied, status)
	}
	tw.Flush()
}
