//go:build !windows

package podman

import (
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// LocalFacts learns, without the slow /info call (about 200 ms on a 4.3 server), what
// sessions need from a service on a local unix socket: a rootless service's socket belongs
// to its user, a rootful one's to root, and the cgroup version is this host's. ok is false
// for remote endpoints, which must ask the service.
func LocalFacts(ep Endpoint) (rootless bool, cgroups string, ok bool) {
	path, isUnix := strings.CutPrefix(ep.URI, "unix://")
	if !isUnix {
		return false, "", false
	}
	st, err := os.Stat(path)
	if err != nil {
		return false, "", false
	}
	sys, isStat := st.Sys().(*syscall.Stat_t)
	if !isStat {
		return false, "", false
	}
	cgroups = "v1"
	var fs syscall.Statfs_t
	if syscall.Statfs("/sys/fs/cgroup", &fs) == nil && fs.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
		cgroups = "v2"
	}
	return sys.Uid != 0, cgroups, true
}

// FileOwner returns the uid that owns a file.
func FileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
