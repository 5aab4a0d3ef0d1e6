// Package machine describes Podman machines — the Linux VMs Podman runs containers in on
// macOS and Windows — as plain data. Both the code that drives `podman machine` and the code
// that decides what to do with a machine use these types, so neither imports the other.
package machine

import "time"

// States, as Podman reports them.
const (
	Running  = "running"
	Stopped  = "stopped"
	Starting = "starting"
)

// Info is one machine, in the units people use: MiB of memory, GiB of disk.
type Info struct {
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
