package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// Exit codes, documented in `sourceosctl --help` and the README. `run` and `shell` return the
// tool's own exit code instead when the tool ran.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2 // bad flags, arguments or profile
	ExitRefused = 3 // refused by policy
	ExitMissing = 4 // a required component is missing
	ExitSIGINT  = 130
	ExitSIGTERM = 143
)

const exitCodesHelp = `Exit codes:
  0  success
  1  failure
  2  usage error: bad flags, arguments or profile
  3  refused by policy (a mount, tool or secret the profile does not allow)
  4  a required component is missing (Podman, a machine, the API socket); the message
     gives the exact command that provides it
  run and shell return the tool's own exit code when the tool ran.`

// UsageError is a mistake on the command line.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// HintError carries a command the user can copy to fix the problem.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// NotImplementedError is returned by commands that a later release will implement.
type NotImplementedError struct {
	Command string
	Planned string
}

func (e *NotImplementedError) Error() string {
	return fmt.Sprintf("%s is not implemented yet (planned: %s)", e.Command, e.Planned)
}

// ExitError carries a specific exit code, such as the tool's own from `run`.
type ExitError struct {
	Code int
	Err  error // nil when the code speaks for itself
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps an error to the process exit code: the one place that does.
func ExitCode(err error) int {
	var (
		exit    *ExitError
		usage   *UsageError
		load    *profile.LoadError
		missing *agentmachine.MissingError
		input   *agentmachine.InputError
		noAPI   *podman.NotFoundError
		unreach *podman.UnreachableError
		refused *policy.RefusedError
		badURI  *podman.BadURIError
		intr    *agentmachine.Interrupt
		imgIn   *image.InputError
		sum     *image.ChecksumError
		tool    *image.MissingToolError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &exit):
		return exit.Code
	case errors.As(err, &intr):
		if intr.Signal == "SIGTERM" {
			return ExitSIGTERM
		}
		return ExitSIGINT
	case errors.As(err, &refused), errors.As(err, &sum):
		return ExitRefused
	case errors.As(err, &usage), errors.As(err, &load), errors.As(err, &input), errors.As(err, &badURI), errors.As(err, &imgIn):
		return ExitUsage
	case errors.As(err, &missing), errors.As(err, &noAPI), errors.As(err, &unreach), errors.As(err, &tool):
		return ExitMissing
	}
	return ExitFailure
}

// printError writes err and every hint found in its chain, one per line.
func printError(w io.Writer, err error) {
	var exit *ExitError
	if errors.As(err, &exit) && exit.Err == nil {
		return // the tool has already spoken; its exit code is the message
	}
	fmt.Fprintf(w, "Error: %s\n", err)
	for _, h := range hints(err) {
		fmt.Fprintf(w, "  hint: %s\n", h)
	}
}

func hints(err error) []string {
	var out []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch h := e.(type) {
		case *HintError:
			out = append(out, h.Hint)
		case interface{ Hint() string }:
			if s := h.Hint(); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
