//go:build windows

package agentmachine

import "io/fs"

// PathOwner has no uid on Windows: the session runs as the machine's user (see Facts).
func PathOwner(string) (uid, gid int) { return 0, 0 }

// PathMode is unknown on Windows.
func PathMode(string) fs.FileMode { return 0 }

// fileIdentity is unknown on Windows: a file is known by its name only.
func fileIdentity(fs.FileInfo) string { return "" }
