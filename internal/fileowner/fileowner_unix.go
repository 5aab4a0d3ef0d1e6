//go:build unix

package fileowner

import (
	"io/fs"
	"syscall"
)

// FromInfo returns the owner recorded in a file's status.
func FromInfo(st fs.FileInfo) (uid, gid int, ok bool) {
	if sys, isStat := st.Sys().(*syscall.Stat_t); isStat {
		return int(sys.Uid), int(sys.Gid), true
	}
	return 0, 0, false
}
