//go:build windows

package podman

import "os/exec"

// detach is a no-op on Windows: Podman runs in a machine there, never as a local service.
func detach(*exec.Cmd) {}
