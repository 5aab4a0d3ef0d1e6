//go:build !windows

package podman

import (
	"os/exec"
	"syscall"
)

// detach runs cmd in its own session, so it outlives sourceosctl and its terminal.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
