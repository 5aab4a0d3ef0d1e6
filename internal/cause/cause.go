// Package cause finds the innermost error of a chain, whose text is usually the one a
// person needs ("connection refused", "no such file or directory") without the layers of
// context around it.
package cause

import "errors"

// Root returns the innermost error that err wraps (err itself when it wraps nothing).
func Root(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
