package agentmachine

import "fmt"

// MissingError says a component the command needs is absent (no Podman, no machine, no API
// socket). Fix is the exact command that provides it.
type MissingError struct {
	Component string
	Detail    string
	Fix       string
}

func (e *MissingError) Error() string {
	if e.Detail == "" {
		return e.Component + " is missing"
	}
	return fmt.Sprintf("%s: %s", e.Component, e.Detail)
}

// Hint returns the command that fixes the problem.
func (e *MissingError) Hint() string { return e.Fix }

// InputError is a problem with what the user asked for (a flag's value, a path), as opposed
// to a failure while doing it. It maps to the usage exit code.
type InputError struct {
	Flag string // e.g. "--repo"
	Err  error
	Fix  string
}

func (e *InputError) Error() string {
	if e.Flag == "" {
		return e.Err.Error()
	}
	return e.Flag + ": " + e.Err.Error()
}
func (e *InputError) Unwrap() error { return e.Err }
func (e *InputError) Hint() string  { return e.Fix }

// HintError is a failure with the step that fixes it: a command the user can copy.
type HintError struct {
	Err error
	Fix string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }
func (e *HintError) Hint() string  { return e.Fix }
