// Package fileowner reads who owns a file — the one place that turns a file's system-specific
// status into a uid and gid, for the packages that act as a repository's owner.
package fileowner

import "os"

// Of returns the owner of path (symlinks followed); ok is false when it cannot be read or
// the system has no uids (Windows).
func Of(path string) (uid, gid int, ok bool) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, false
	}
	return FromInfo(st)
}
