// Package fileerr is an input file that cannot be used: where (the file, and the line when
// it is known), what is wrong, and how to fix it when there is a fix to give.
package fileerr

import "strconv"

// Error reads "FILE:LINE: ERR; FIX" (no line when Line is 0, no fix when Fix is empty).
type Error struct {
	File string
	Line int
	Err  error
	Fix  string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	msg := where + ": " + e.Err.Error()
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// BadInput marks the error as the user's input (exit 2).
func (e *Error) BadInput() bool { return true }
