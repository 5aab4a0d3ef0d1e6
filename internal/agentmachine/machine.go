package agentmachine

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Machine states, as Podman reports them.
const (
	MachineRunning  = "running"
	MachineStopped  = "stopped"
	MachineStarting = "starting"
)

// MachineStatus is a Podman machine, in the units people use: MiB of memory, GiB of disk.
type MachineStatus struct {
	Name      string    `json:"name"`
	Provider  string    `json:"provider"`
	State     string    `json:"state"`
	CPUs      int       `json:"cpus"`
	MemoryMiB int       `json:"memoryMiB"`
	DiskGiB   int       `json:"diskGiB"`
	Mounts    []string  `json:"mounts"` // host paths shared with the VM
	Socket    string    `json:"socket,omitempty"`
	Rootful   bool      `json:"rootful"`
	LastUp    time.Time `json:"lastUp"`
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
	return fmt.Sprintf("podman machine rm %s && podman machine init %s --volume ~/dev:~/dev", m.Name, m.Name)
}
