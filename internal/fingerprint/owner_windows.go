//go:build windows

package fingerprint

// ownedByAnother is not checked on Windows, where git's ownership check uses SIDs.
func ownedByAnother(string) bool { return false }
