package image

import "fmt"

// InputError is bad input from the command line, a catalog or a profile (exit code 2).
type InputError struct {
	Msg string
	Fix string
}

func (e *InputError) Error() string { return e.Msg }

// Hint is the fix printed under the error.
func (e *InputError) Hint() string { return e.Fix }

// ChecksumError is an archive whose SHA-256 is not the one its source declares. It is refused
// before anything is loaded (exit code 3).
type ChecksumError struct {
	Source string
	Want   string
	Got    string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: checksum mismatch: want sha256 %s, got %s; nothing was loaded", e.Source, e.Want, e.Got)
}

// Hint says how to proceed.
func (e *ChecksumError) Hint() string {
	return "the archive is not the one the profile names: check spec.image.sources[].sha256 against the publisher's checksum"
}
