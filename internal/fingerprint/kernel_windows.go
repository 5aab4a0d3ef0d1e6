//go:build windows

package fingerprint

// KernelRelease is unknown on Windows: containers run in the machine's Linux kernel.
func KernelRelease() string { return "" }
