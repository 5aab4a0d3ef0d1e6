// Package machine describes Podman machines — the Linux VMs Podman runs containers in on
// macOS and Windows — as plain data. Both the code that drives `podman machine` and the code
// that decides what to do with a machine use these types, so neither imports the other.
package machine

import (
	"fmt"
	"strings"
	"time"
)

// States, as Podman reports them.
const (
	Running  = "running"
	Stopped  = "stopped"
	Starting = "starting"
)

// ProviderEnv is the environment variable that selects the provider (VM type) a `podman
// machine` command works with. Without it, inspect, start and stop see only the machines of
// the provider containers.conf (or the OS's default) names: a libkrun machine is "VM does not
// exist" to them on a Mac whose default is applehv.
const ProviderEnv = "CONTAINERS_MACHINE_PROVIDER"

// Ref names a profile's machine: its name and the provider it must be looked for under
// ("" for any). The zero Ref means no machine.
type Ref struct {
	Name     string
	Provider string
}

// Info is one machine, in the units people use: MiB of memory, GiB of disk. A resource Podman
// did not report (Podman 4 on WSL reports 0 CPUs and 0 memory: the VM shares the host's) is 0
// here and omitted from JSON; Resources says "unknown" for it.
type Info struct {
	Name      string `json:"name"`
	Provider  string `json:"provider"`
	State     string `json:"state"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	DiskGiB   int    `json:"diskGiB,omitempty"`
	// Mounts are the host paths shared with the VM, as its configuration file lists them.
	Mounts []string `json:"mounts"`
	// MountsUnknown says why the shares could not be read; Mounts is then empty, which
	// means "unknown", never "none".
	MountsUnknown string    `json:"mountsUnknown,omitempty"`
	Socket        string    `json:"socket,omitempty"`
	Rootful       bool      `json:"rootful"`
	LastUp        time.Time `json:"lastUp"`
}

// Resources is the machine's size for people: "4 cpus, 8192 MiB", with "unknown" for what
// Podman did not report.
func (i Info) Resources() string {
	cpus, mem := "cpus unknown", "memory unknown"
	if i.CPUs > 0 {
		cpus = fmt.Sprintf("%d cpus", i.CPUs)
	}
	if i.MemoryMiB > 0 {
		mem = fmt.Sprintf("%d MiB", i.MemoryMiB)
	}
	return cpus + ", " + mem
}

// Command is one podman command for a machine: its arguments after "podman", and the
// provider it must be run with (empty: the user's own default).
type Command struct {
	Provider string   `json:"provider,omitempty"`
	Args     []string `json:"args"`
}

// Env is the environment the command adds to the caller's.
func (c Command) Env() []string {
	if c.Provider == "" {
		return nil
	}
	return []string{ProviderEnv + "=" + c.Provider}
}

// Inspect, Start and Stop are the commands for a machine, scoped to its provider.
func Inspect(m Info) Command {
	return Command{Provider: m.Provider, Args: []string{"machine", "inspect", m.Name}}
}
func Start(m Info) Command {
	return Command{Provider: m.Provider, Args: []string{"machine", "start", m.Name, "--no-info", "-q"}}
}
func Stop(m Info) Command {
	return Command{Provider: m.Provider, Args: []string{"machine", "stop", m.Name}}
}

// Shell renders the command as the user would type it on goos, environment included: a
// POSIX prefix assignment, or PowerShell's $env: on Windows. quote quotes each argument.
func (c Command) Shell(goos string, quote func([]string) string) string {
	line := quote(append([]string{"podman"}, c.Args...))
	if c.Provider == "" {
		return line
	}
	if goos == "windows" {
		return fmt.Sprintf(`$env:%s="%s"; %s`, ProviderEnv, c.Provider, line)
	}
	return ProviderEnv + "=" + c.Provider + " " + line
}

// String is the command in POSIX form, for errors and logs.
func (c Command) String() string {
	return c.Shell("linux", func(a []string) string { return strings.Join(a, " ") })
}
