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

// The programs carried: the helper every container starts with, the collector, and the
// egress gateway that runs as a sidecar where sourceosctl cannot serve it itself.
const (
	helperName    = "sourceos-helper"
	collectorName = "sourceos-collect"
	gatewayName   = "sourceos-gateway"
	sftpName      = "sourceos-sftp"
)

// Shipment is what a session on a Podman machine or remote service copies there (into a
// Podman volume): the helper and the gateway for the service's architecture. Planning needs
// their digests only; Load reads the programs (megabytes) when they are shipped.
type Shipment struct {
	HelperDigest, GatewayDigest string
	Load                        func() (helperBin, gatewayBin []byte, err error)
}

// Ship returns the programs to ship to a service of architecture arch.
func Ship(arch string) (Shipment, error) {
	h, err := digest(helperName, arch)
	if err != nil {
		return Shipment{}, err
	}
	g, err := digest(gatewayName, arch)
	if err != nil {
		return Shipment{}, err
	}
	return Shipment{HelperDigest: h, GatewayDigest: g, Load: func() ([]byte, []byte, error) {
		hb, err := binary(helperName, arch)
		if err != nil {
			return nil, nil, err
		}
		gb, err := binary(gatewayName, arch)
		return hb, gb, err
	}}, nil
}

// Binary returns the helper built for a Linux architecture (amd64, arm64).
func Binary(arch string) ([]byte, error) { return binary(helperName, arch) }

// Digest is the helper's SHA-256 for arch, computed when it was built (make helper): a
// session names the helper without reading it, which costs tens of milliseconds of page
// faults and hashing on a small virtual machine.
func Digest(arch string) (string, error) { return digest(helperName, arch) }

// Located is where Install puts the helper for arch below dir, and its digest, without
// writing or reading the helper itself (for plans and dry runs).
func Located(dir, arch string) (path, digest string, err error) {
	return located(helperName, dir, arch)
}

// Install writes the helper for arch below dir (mode 0755, content-addressed by name) unless
// it is already there with the right size, and returns its path and digest. The file lives in
// sourceosctl's own state, which no session can mount; a process running as the user could
// replace it, as it could replace sourceosctl itself.
func Install(dir, arch string) (path, digest string, err error) {
	return install(helperName, dir, arch)
}

// InstallCollector is Install for the collector (cmd/sourceos-collect), which a session runs
// only when it has work to bring back from its copy.
func InstallCollector(dir, arch string) (path, digest string, err error) {
	return install(collectorName, dir, arch)
}

// InstallSFTP is Install for the SFTP server (cmd/sourceos-sftp) a workspace's container
// mounts for editors; LocatedSFTP names it without writing it.
func InstallSFTP(dir, arch string) (path, digest string, err error) {
	return install(sftpName, dir, arch)
}

func LocatedSFTP(dir, arch string) (path, digest string, err error) {
	return located(sftpName, dir, arch)
}

func binary(name, arch string) ([]byte, error) {
	b, err := builds.ReadFile("bin/" + name + "-linux-" + arch)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s for linux/%s)", ErrNotBuilt, name, arch)
	}
	return b, err
}

func digest(name, arch string) (string, error) {
	b, err := builds.ReadFile("bin/" + name + "-linux-" + arch + ".sha256")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (no digest of %s for linux/%s)", ErrNotBuilt, name, arch)
	}
	if err != nil {
		return "", err
	}
	sum := strings.TrimSpace(string(b))
	if len(sum) != 64 {
		return "", fmt.Errorf("%w (a malformed digest of %s for linux/%s)", ErrNotBuilt, name, arch)
	}
	return "sha256:" + sum, nil
}

func located(name, dir, arch string) (path, sum string, err error) {
	sum, err = digest(name, arch)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, name+"-"+strings.TrimPrefix(sum, "sha256:")[:16]+"-linux-"+arch), sum, nil
}

func install(name, dir, arch string) (path, sum string, err error) {
	path, sum, err = located(name, dir, arch)
	if err != nil {
		return "", "", err
	}
	built, err := fs.Stat(builds, "bin/"+name+"-linux-"+arch)
	if err != nil {
		return "", "", fmt.Errorf("%w (no %s for linux/%s)", ErrNotBuilt, name, arch)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() == built.Size() && st.Mode().Perm() == 0o755 {
		return path, sum, nil
	}
	b, err := binary(name, arch)
	if err != nil {
		return "", "", err
	}
	if err := atomicfile.Write(path, b, 0o755, atomicfile.Options{}); err != nil {
		return "", "", fmt.Errorf("install %s: %w", name, err)
	}
	return path, sum, nil
}
