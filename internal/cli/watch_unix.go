//go:build !windows

package cli

import (
	"os/exec"
	"syscall"
)

const noFollow = syscall.O_NOFOLLOW

// detach starts cmd in a session of its own (no terminal's signals reach it).
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
