//go:build windows

package podman

// LocalFacts has nothing to learn locally on Windows: Podman runs in a machine there.
func LocalFacts(Endpoint) (rootless bool, cgroups string, ok bool) { return false, "", false }
