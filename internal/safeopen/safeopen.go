// Package safeopen opens files that another party (a container, a cloned repository) could
// have placed: never through a symbolic link at the last step, never blocking on a FIFO or a
// device, and only when what was opened is a regular file — checked on the open file itself,
// so nothing can be swapped in between the check and the read.
package safeopen

import (
	"fmt"
	"io"
	"os"
)

// Regular opens path for reading when it is a regular file; its size is the opened file's.
func Regular(path string) (f *os.File, size int64, err error) {
	f, err = open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	return f, st.Size(), nil
}

// TooLargeError is a file larger than ReadFile may read.
type TooLargeError struct {
	Path      string
	Size, Max int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, more than the %d it may be", e.Path, e.Size, e.Max)
}

// ReadFile reads path, a regular file (see Regular) of at most max bytes.
func ReadFile(path string, max int64) ([]byte, error) {
	f, size, err := Regular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, &TooLargeError{Path: path, Size: size, Max: max}
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max { // it grew since it was opened
		return nil, &TooLargeError{Path: path, Size: int64(len(data)), Max: max}
	}
	return data, err
}
