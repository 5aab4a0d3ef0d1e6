//go:build !windows

package evidencelog

import (
	"os"

	"golang.org/x/sys/unix"
)

// lock takes the exclusive lock on path, waiting for another appender to finish.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// noFollow makes an open fail on a symbolic link at the last step.
const noFollow = unix.O_NOFOLLOW
