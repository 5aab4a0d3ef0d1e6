//go:build !unix

package gitrun

import "os/exec"

func euid() int { return 0 }

// owner is not checked off Unix (git's ownership check there uses SIDs).

func asOwner(*exec.Cmd, string) error { return nil }
