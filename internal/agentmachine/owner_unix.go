//go:build !windows

package agentmachine

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/sourceos/sourceosctl/internal/fileowner"
)

// PathOwner returns the uid and gid owning path (0, 0 when unknown).
func PathOwner(path string) (uid, gid int) {
	uid, gid, _ = fileowner.Of(path)
	return uid, gid
}

// PathMode returns path's permission bits (0 when unknown).
func PathMode(path string) fs.FileMode {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Mode().Perm()
}

// fileIdentity names the file st describes (device and inode): the same name with another
// identity is another file.
func fileIdentity(st fs.FileInfo) string {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", sys.Dev, sys.Ino)
	}
	return ""
}
