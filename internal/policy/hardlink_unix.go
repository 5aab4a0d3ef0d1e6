//go:build unix

package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

const linkCountsKnown = true

// walkSameDevice calls fn for every regular file with more than one link below root (root
// itself when it is such a file) on root's device, without following symlinks. A missing or
// unreadable root is nothing to walk; unreadable directories below it are skipped (the session
// could not read them either), and so are entries removed while it walks (skippable). Any
// other failure (too many open files, an I/O error, a path too long) is returned: a walk cut
// short would otherwise read as "no linked file". A stat interrupted by a signal (network and
// FUSE file systems) is retried.
// Each file is stat'ed relative to its open directory, and directories are read by a few
// workers at once: a stat by absolute path costs a path lookup per file, which on a 50,000
// file repository made the walk several times slower than `git status`.
func walkSameDevice(ctx context.Context, root string, fn func(path string, id fileID, nlink uint64)) error {
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Lstat(root, &st) }); err != nil {
		if skippable(err) {
			return nil
		}
		return fmt.Errorf("walk %s: %w", root, err)
	}
	dev := uint64(st.Dev) //nolint:unconvert // widths differ by OS
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		if st.Nlink > 1 {
			fn(root, fileID{dev: dev, ino: uint64(st.Ino)}, uint64(st.Nlink)) //nolint:unconvert
		}
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	var (
		mu       sync.Mutex // guards fn, backlog and firstErr
		pending  sync.WaitGroup
		dirs     = make(chan string, 1024)
		backlog  []string
		firstErr error
	)
	// keep keeps the walk's first failure.
	keep := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	// fail keeps a failure that is not a directory the session could not read either, or
	// an entry gone since it was listed.
	fail := func(path string, err error) {
		if !skippable(err) {
			keep(fmt.Errorf("walk %s: %w", path, err))
		}
	}
	report := func(path string, id fileID, nlink uint64) {
		mu.Lock()
		fn(path, id, nlink)
		mu.Unlock()
	}
	// queue adds a directory: to the channel when there is room, else to a backlog the
	// workers drain, so no worker ever blocks on a full channel.
	queue := func(dir string) {
		pending.Add(1)
		select {
		case dirs <- dir:
		default:
			mu.Lock()
			backlog = append(backlog, dir)
			mu.Unlock()
		}
	}
	next := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if n := len(backlog); n > 0 {
			d := backlog[n-1]
			backlog = backlog[:n-1]
			return d, true
		}
		return "", false
	}
	visit := func(dir string) {
		defer pending.Done()
		if ctx.Err() != nil {
			return
		}
		f, err := os.Open(dir)
		if err != nil {
			fail(dir, err)
			return
		}
		defer f.Close()
		fd := int(f.Fd())
		for {
			entries, err := f.ReadDir(512)
			for _, e := range entries {
				t := e.Type()
				if !t.IsRegular() && !t.IsDir() {
					continue
				}
				var st unix.Stat_t
				if err := retryEINTR(func() error { return unix.Fstatat(fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
					fail(filepath.Join(dir, e.Name()), err)
					continue
				}
				id := fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)} //nolint:unconvert
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFDIR:
					if id.dev == dev { // another file system mounted below is not in a session's bind
						queue(filepath.Join(dir, e.Name()))
					}
				case unix.S_IFREG:
					if st.Nlink > 1 { // the only files a hard link can be
						report(filepath.Join(dir, e.Name()), id, uint64(st.Nlink)) //nolint:unconvert
					}
				}
			}
			if err != nil {
				var gone unix.Stat_t
				switch {
				case errors.Is(err, io.EOF):
				case errors.Is(err, unix.ENOENT) && (unix.Fstat(fd, &gone) != nil || gone.Nlink > 0):
					// Some network file systems (CIFS) say ENOENT halfway through a directory
					// that is still there: the rest of it was not seen.
					keep(fmt.Errorf("walk %s: reading stopped halfway: %w", dir, err))
				default:
					fail(dir, err) // a directory removed while it was read is passed over
				}
				return
			}
		}
	}
	queue(root)
	done := make(chan struct{})
	go func() { pending.Wait(); close(done) }()
	var workers sync.WaitGroup
	for i := 0; i < max(2, runtime.GOMAXPROCS(0)); i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				if d, ok := next(); ok {
					visit(d)
					continue
				}
				select {
				case d := <-dirs:
					visit(d)
				case <-done:
					return
				}
			}
		}()
	}
	workers.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return firstErr
}

// lstatID is a path's device and inode, and whether it is a directory, without following a
// symlink.
func lstatID(path string) (fileID, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fileID{}, false, fs.ErrNotExist
		}
		return fileID{}, false, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil //nolint:unconvert
}

// skippable is a failure the walk passes over: a directory this user cannot list (EACCES,
// EPERM: below a mount, the session cannot read it either; below a protected entry, a link
// to a file in it goes unseen: making one needs the same access), an entry gone since it was
// listed (ENOENT, ENOTDIR, and NFS's ESTALE), or a dead FUSE mount point (ENOTCONN: another
// file system, which the walk would not enter).
func skippable(err error) bool {
	for _, e := range []error{unix.EACCES, unix.EPERM, unix.ENOENT, unix.ENOTDIR, unix.ESTALE, unix.ENOTCONN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// retryEINTR runs a raw system call again while a signal interrupts it (os does this for its
// own calls; x/sys/unix does not).
func retryEINTR(call func() error) error {
	for {
		if err := call(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
