//go:build !windows

package fingerprint

import (
	"os"
	"syscall"
)

// ownedByAnother reports whether path belongs to a user other than the effective one, which
// git's ownership check (safe.directory) would refuse.
func ownedByAnother(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) != os.Geteuid()
}
