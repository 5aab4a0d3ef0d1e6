package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/fileerr"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/kube"
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

// ExitError carries a specific exit code with nothing more to say (doctor's failures are
// already in its report).
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
		toolEx  *agentmachine.ToolExitError
		usage   *UsageError
		load    *profile.LoadError
		missing *agentmachine.MissingError
		input   *agentmachine.InputError
		noAPI   *podman.NotFoundError
		rtDir   *podman.RuntimeDirError
		unreach *podman.UnreachableError
		refused *policy.RefusedError
		badURI  *podman.BadURIError
		unknown *podman.UnknownConnectionError
		intr    *agentmachine.Interrupt
		imgIn   *image.InputError
		sum     *image.ChecksumError
		tool    *image.MissingToolError
		fileIn  *fileerr.Error // a manifest or devcontainer.json that cannot be used
		weak    *kube.WeakenedError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &exit):
		return exit.Code
	case errors.As(err, &toolEx):
		return toolEx.Code
	case errors.As(err, &intr):
		if intr.Signal == "SIGTERM" {
			return ExitSIGTERM
		}
		return ExitSIGINT
	case errors.As(err, &refused), errors.As(err, &sum), errors.As(err, &weak):
		return ExitRefused
	case errors.As(err, &usage), errors.As(err, &load), errors.As(err, &input), errors.As(err, &badURI), errors.As(err, &unknown), errors.As(err, &imgIn), errors.As(err, &fileIn):
		return ExitUsage
	case errors.As(err, &missing), errors.As(err, &noAPI), errors.As(err, &unreach), errors.As(err, &tool), errors.As(err, &rtDir):
		return ExitMissing
	}
	return ExitFailure
}

// printError writes err and every hint found in its tree, one per line. A tool's own failure
// prints nothing: the tool has spoken, and its exit code is the message.
func printError(w io.Writer, err error) {
	var exit *ExitError
	var toolEx *agentmachine.ToolExitError
	if (errors.As(err, &exit) && exit.Err == nil) || (errors.As(err, &toolEx) && err == error(toolEx)) {
		return
	}
	fmt.Fprintf(w, "Error: %s\n", err)
	for _, h := range hints(err) {
		fmt.Fprintf(w, "  hint: %s\n", h)
	}
}

// hints collects the hints in err's whole tree, errors.Join's branches included, in order and
// without repeats.
func hints(err error) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if h, ok := e.(interface{ Hint() string }); ok {
			if s := h.Hint(); s != "" && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
