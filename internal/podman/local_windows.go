//go:build windows

package podman

import "io/fs"

// LocalFacts has nothing to learn locally on Windows: Podman runs in a machine there.
func LocalFacts(Endpoint) (rootless bool, cgroups string, ok bool) { return false, "", false }

// FileOwner knows no uids on Windows.
func FileOwner(fs.FileInfo) (int, bool) { return 0, false }
