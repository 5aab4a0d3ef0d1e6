//go:build unix

package repocopy

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sourceos/sourceosctl/internal/fileowner"
)

// owner is a file's uid and gid.
type owner struct{ uid, gid int }

func ownerOf(path string) (owner, error) {
	st, err := os.Stat(path)
	if err != nil {
		return owner{}, err
	}
	return ownerFromInfo(st, owner{os.Getuid(), os.Getgid()}), nil
}

func ownerFromInfo(st fs.FileInfo, fallback owner) owner {
	if uid, gid, ok := fileowner.FromInfo(st); ok {
		return owner{uid, gid}
	}
	return fallback
}

// lchown gives path to o when this process may (root); anyone else already owns what it
// creates.
func lchown(path string, o owner) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(path, o.uid, o.gid)
}

// mkWhiteout makes an overlay whiteout: a character device 0:0, which the kernel lets an
// unprivileged user create since Linux 5.8.
func mkWhiteout(path string) error {
	if err := unix.Mknod(path, unix.S_IFCHR|0o000, 0); err != nil {
		return err
	}
	return nil
}
