//go:build !windows

package fingerprint

import "golang.org/x/sys/unix"

// KernelRelease is what `uname -r` prints, read without starting a process.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
