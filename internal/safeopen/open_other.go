//go:build !unix

package safeopen

import (
	"fmt"
	"os"
)

// open refuses a symbolic link by its Lstat; elsewhere than Unix, sessions' files come from a
// machine's shared folder that the container cannot turn into a link between these calls.
func open(path string) (*os.File, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link, not a regular file", path)
	}
	return os.Open(path)
}
