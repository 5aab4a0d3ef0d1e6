//go:build !windows

package agentmachine

import (
	"io/fs"
	"os"
	"syscall"
)

// PathOwner returns the uid and gid owning path (0, 0 when unknown).
func PathOwner(path string) (uid, gid int) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid), int(sys.Gid)
	}
	return 0, 0
}

// PathMode returns path's permission bits (0 when unknown).
func PathMode(path string) fs.FileMode {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Mode().Perm()
}
