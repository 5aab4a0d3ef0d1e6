//go:build windows

package agentmachine

// PathOwner has no uid on Windows: the session runs as the machine's user (see Facts).
func PathOwner(string) (uid, gid int) { return 0, 0 }
