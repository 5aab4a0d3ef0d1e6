// Package helper carries the static Linux builds of cmd/sourceos-helper, the small program
// that runs first in every governed container (see internal/guard), and installs the one a
// container needs as a content-addressed file that sessions mount read-only.
package helper

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
)

//go:embed all:bin
var builds embed.FS

// Target is where the helper is mounted in the container.
const Target = container.HelperTarget

// ErrNotBuilt says this sourceosctl was built without its helper (go build instead of make).
var ErrNotBuilt = errors.New("this sourceosctl was built without its container helper: build it with make build")

// Binary returns the helper built for a Linux architecture (amd64, arm64).
func Binary(arch string) ([]byte, error) {
	b, err := builds.ReadFile("bin/sourceos-helper-linux-" + arch)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no build for linux/%s)", ErrNotBuilt, arch)
	}
	return b, err
}

// Digest is the helper's SHA-256 for arch, computed when it was built (make helper): a
// session names the helper without reading its 2 MB, which costs tens of milliseconds of
// page faults and hashing on a small virtual machine.
func Digest(arch string) (string, error) {
	b, err := builds.ReadFile("bin/sourceos-helper-linux-" + arch + ".sha256")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (no digest for linux/%s)", ErrNotBuilt, arch)
	}
	if err != nil {
		return "", err
	}
	sum := strings.TrimSpace(string(b))
	if len(sum) != 64 {
		return "", fmt.Errorf("%w (a malformed digest for linux/%s)", ErrNotBuilt, arch)
	}
	return "sha256:" + sum, nil
}

// Located is where Install puts the helper for arch below dir, and its digest, without
// writing or reading the helper itself (for plans and dry runs).
func Located(dir, arch string) (path, digest string, err error) {
	digest, err = Digest(arch)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "sourceos-helper-"+strings.TrimPrefix(digest, "sha256:")[:16]+"-linux-"+arch), digest, nil
}

// Install writes the helper for arch below dir (mode 0755, content-addressed by name) unless
// it is already there with the right size, and returns its path and digest. The file lives in
// sourceosctl's own state, which no session can mount; a process running as the user could
// replace it, as it could replace sourceosctl itself.
func Install(dir, arch string) (path, digest string, err error) {
	path, digest, err = Located(dir, arch)
	if err != nil {
		return "", "", err
	}
	built, err := fs.Stat(builds, "bin/sourceos-helper-linux-"+arch)
	if err != nil {
		return "", "", fmt.Errorf("%w (no build for linux/%s)", ErrNotBuilt, arch)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() == built.Size() && st.Mode().Perm() == 0o755 {
		return path, digest, nil
	}
	b, err := Binary(arch)
	if err != nil {
		return "", "", err
	}
	if err := atomicfile.Write(path, b, 0o755, atomicfile.Options{}); err != nil {
		return "", "", fmt.Errorf("install the container helper: %w", err)
	}
	return path, digest, nil
}
