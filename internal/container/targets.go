package container

import (
	"path"
	"strings"
)

// Paths inside every governed container that sourceosctl itself provides.
const (
	// ToolHome is the tool's home directory, a writable tmpfs.
	ToolHome = "/home/agent"
	// TmpDir is the writable tmpfs for temporary files.
	TmpDir = "/tmp"
)

// systemTargets are the image's own directories: a mount over one, or inside one, replaces
// what the container runs (its binaries, libraries, configuration, the init Podman mounts at
// /run/podman-init) or what the kernel provides (/proc, /sys, /dev).
var systemTargets = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var"}

// TargetProblem says why target cannot be a mount's destination, or "" when it can: it must
// be absolute and clean, and must neither cover nor sit inside a system directory, the tool's
// home or the tmpfs for temporary files.
func TargetProblem(target string) string {
	if !strings.HasPrefix(target, "/") {
		return "must be an absolute path inside the container"
	}
	t := path.Clean(target)
	if t == "/" {
		return "cannot be /: the mount would replace the whole container"
	}
	for _, s := range systemTargets {
		switch {
		case t == s || strings.HasPrefix(t, s+"/"):
			return "is " + within(t, s) + "the image's system directory " + s + "; mount elsewhere, e.g. under /mnt or /srv"
		case strings.HasPrefix(s, t+"/"):
			return "would cover the image's system directory " + s + "; mount elsewhere, e.g. under /mnt or /srv"
		}
	}
	for _, own := range []struct{ path, what string }{{ToolHome, "the tool's home (a private tmpfs)"}, {TmpDir, "the tmpfs for temporary files"}} {
		switch {
		case t == own.path || strings.HasPrefix(t, own.path+"/"):
			return "is " + within(t, own.path) + own.what + "; mount elsewhere, e.g. under /mnt or /srv"
		case strings.HasPrefix(own.path, t+"/"):
			return "would cover " + own.what + " at " + own.path + "; mount elsewhere, e.g. under /mnt or /srv"
		}
	}
	return ""
}

// within is "" when t is dir itself and "inside " when it lies below it.
func within(t, dir string) string {
	if t == dir {
		return ""
	}
	return "inside "
}

// Nested reports whether one of two mount targets is the other or lies inside it.
func Nested(a, b string) bool {
	a, b = path.Clean(a), path.Clean(b)
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// StateTarget is where a tool's state volume is mounted: its login, settings and history,
// kept across sessions (the tool's StateEnv names it).
const StateTarget = "/run/sourceos-state"

// ShippedTarget is where the programs sourceosctl ships to a service on another machine are
// mounted (a volume: sourceos-helper and sourceos-gateway).
const ShippedTarget = "/run/sourceos-programs"

// SFTPTarget is where a workspace's container finds sourceos-sftp, the SFTP server its
// editor access runs inside (read-only, like the helper).
const SFTPTarget = "/run/sourceos-sftp"

// HelperTarget is where sourceos-helper, which checks a container from inside before the
// tool runs, is mounted.
const HelperTarget = "/run/sourceos-helper"

// EgressTarget is where the directory holding the session's egress gateway socket is mounted
// (read-only: connecting to a socket writes nothing), and EgressListen where the helper's
// forwarder listens inside for the tools' HTTP(S)_PROXY.
const (
	EgressTarget = "/run/sourceos-egress"
	EgressSocket = "gateway.sock"
	EgressListen = "127.0.0.1:3128"
)
