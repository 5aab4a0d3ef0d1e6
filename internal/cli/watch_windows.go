package cli

import "os/exec"

const noFollow = 0

// detach: repositories are watched on Linux only (watcherFor starts none elsewhere).
func detach(*exec.Cmd) {}
