//go:build !unix

package gitrun

import "os/exec"

func euid() int { return 0 }

// owner is not checked off Unix (git's ownership check there uses SIDs).
func owner(string) (int, int, bool) { return 0, 0, false }

func asOwner(*exec.Cmd, string) error { return nil }
