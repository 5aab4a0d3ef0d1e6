package agentmachine

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Machine states, as Podman reports them.
const (
	MachineRunning  = "running"
	MachineStopped  = "stopped"
	MachineStarting = "starting"
)

// MachineStatus is a Podman machine, in the units people use: MiB of memory, GiB of disk.
type MachineStatus struct {
	Name      string   `json:"name"`
	Provider  string   `json:"provider"`
	State     string   `json:"state"`
	CPUs      int      `json:"cpus"`
	MemoryMiB int      `json:"memoryMiB"`
	DiskGiB   int      `json:"diskGiB"`
	Mounts    []string `json:"mounts"` // host paths shared with the VM
	Socket    string   `json:"socket,omitempty"`
	Rootful   bool     `json:"rootful"`
	// InitCommand is the `podman machine init` line that would create a machine like it.
	InitCommand string `json:"-"`
}

// wideShares names a share that exposes the whole home directory (or /Users) to the VM.
func (m MachineStatus) wideShares(getenv func(string) string) string {
	home := getenv("HOME")
	for _, s := range m.Mounts {
		clean := filepath.ToSlash(filepath.Clean(s))
		if clean == "/Users" || clean == "/home" || clean == "/" || (home != "" && clean == filepath.ToSlash(filepath.Clean(home))) ||
			strings.EqualFold(clean, "C:/Users") {
			return s
		}
	}
	return ""
}

func (m MachineStatus) initHint() string {
	if m.InitCommand != "" {
		return m.InitCommand
	}
	return fmt.Sprintf("podman machine init %s --volume ~/dev:~/dev", m.Name)
}
