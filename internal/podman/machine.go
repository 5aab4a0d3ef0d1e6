package podman

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// listEntry is one element of `podman machine list --format json`: Memory and DiskSize are
// byte counts written as strings.
type listEntry struct {
	Name     string
	Default  bool
	Running  bool
	Starting bool
	VMType   string
	CPUs     uint64
	Memory   string
	DiskSize string
}

// inspectEntry is one element of `podman machine inspect`: Memory in MiB, DiskSize in GiB.
type inspectEntry struct {
	ConfigDir      struct{ Path string }
	ConnectionInfo struct {
		PodmanSocket *vmFile
		PodmanPipe   *vmFile
	}
	Name      string
	LastUp    time.Time
	Resources struct {
		CPUs     uint64
		DiskSize uint64
		Memory   uint64
	}
	State   string
	Rootful bool
}

type vmFile struct {
	Path    string
	Symlink *string `json:"symlink"`
}

// Machines drives `podman machine`, which has no API.
type Machines struct {
	Runner   Runner
	ReadFile func(string) ([]byte, error)
}

// List returns every machine of every provider.
func (m Machines) List(ctx context.Context) ([]machine.Info, error) {
	out, err := m.Runner.Run(ctx, "podman", "machine", "list", "--all-providers", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("list Podman machines: %w", err)
	}
	var entries []listEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("list Podman machines: unexpected output: %w", err)
	}
	machines := make([]machine.Info, 0, len(entries))
	for _, e := range entries {
		state := machine.Stopped
		switch {
		case e.Running:
			state = machine.Running
		case e.Starting:
			state = machine.Starting
		}
		machines = append(machines, machine.Info{Name: e.Name, Provider: e.VMType, State: state, CPUs: int(e.CPUs),
			MemoryMiB: int(bytesTo(e.Memory, 20)), DiskGiB: int(bytesTo(e.DiskSize, 30))})
	}
	return machines, nil
}

func bytesTo(s string, shift uint) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n >> shift
}

// Get returns the named machine with the details only inspect gives (socket, rootful, the
// shared host paths from its configuration file); found is false when there is none.
func (m Machines) Get(ctx context.Context, name string) (machine.Info, bool, error) {
	all, err := m.List(ctx)
	if err != nil {
		return machine.Info{}, false, err
	}
	var mach machine.Info
	found := false
	for _, x := range all {
		if x.Name == name {
			mach, found = x, true
		}
	}
	if !found {
		return machine.Info{}, false, nil
	}
	out, err := m.Runner.Run(ctx, "podman", "machine", "inspect", name)
	if err != nil {
		return machine.Info{}, false, fmt.Errorf("inspect Podman machine %s: %w", name, err)
	}
	var infos []inspectEntry
	if err := json.Unmarshal(out, &infos); err != nil || len(infos) == 0 {
		return machine.Info{}, false, fmt.Errorf("inspect Podman machine %s: unexpected output", name)
	}
	in := infos[0]
	mach.State, mach.Rootful, mach.LastUp = in.State, in.Rootful, in.LastUp
	mach.CPUs, mach.MemoryMiB, mach.DiskGiB = int(in.Resources.CPUs), int(in.Resources.Memory), int(in.Resources.DiskSize)
	if s := in.ConnectionInfo.PodmanSocket; s != nil {
		mach.Socket = s.Path
		if s.Symlink != nil && *s.Symlink != "" {
			mach.Socket = *s.Symlink // shorter: unix socket paths are limited to ~104 bytes on macOS
		}
	}
	mach.Mounts = m.shares(in)
	return mach, true, nil
}

// shares reads the host paths a machine shares from its configuration file, which inspect
// names (ConfigDir) but does not print.
func (m Machines) shares(in inspectEntry) []string {
	if m.ReadFile == nil || in.ConfigDir.Path == "" {
		return nil
	}
	raw, err := m.ReadFile(filepath.Join(in.ConfigDir.Path, in.Name+".json"))
	if err != nil {
		return nil
	}
	var cfg struct{ Mounts []struct{ Source string } }
	if json.Unmarshal(raw, &cfg) != nil {
		return nil
	}
	var out []string
	for _, mt := range cfg.Mounts {
		out = append(out, mt.Source)
	}
	return out
}

// StartMachine starts a machine quietly.
func (m Machines) StartMachine(ctx context.Context, name string) error {
	if _, err := m.Runner.Run(ctx, "podman", "machine", "start", name, "--no-info", "-q"); err != nil {
		return fmt.Errorf("start Podman machine %s: %w", name, err)
	}
	return nil
}

// StopMachine stops a machine.
func (m Machines) StopMachine(ctx context.Context, name string) error {
	if _, err := m.Runner.Run(ctx, "podman", "machine", "stop", name); err != nil {
		return fmt.Errorf("stop Podman machine %s: %w", name, err)
	}
	return nil
}

// MachineEndpoint is the API endpoint of a running machine: its forwarded socket on macOS
// and Linux, or on Windows — where the bindings cannot use named pipes — its ssh connection.
func (r Resolver) MachineEndpoint(ctx context.Context, m Machines, name string) (Endpoint, error) {
	mach, found, err := m.Get(ctx, name)
	if err != nil {
		return Endpoint{}, err
	}
	if !found {
		return Endpoint{}, &NotFoundError{Tried: []string{"Podman machine " + name}, Fix: "sourceosctl agent-machine start"}
	}
	if mach.State != machine.Running {
		return Endpoint{}, &NotFoundError{Tried: []string{fmt.Sprintf("Podman machine %s (%s)", name, mach.State)}, Fix: "sourceosctl agent-machine start"}
	}
	if r.GOOS != "windows" && mach.Socket != "" {
		return Endpoint{URI: "unix://" + mach.Socket, Source: "machine " + name}, nil
	}
	conns, err := r.Connections(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	want := name
	if mach.Rootful {
		want = name + "-root"
	}
	for _, c := range conns {
		if c.Name == want || (c.IsMachine && strings.TrimSuffix(c.Name, "-root") == name && mach.Rootful == strings.HasSuffix(c.Name, "-root")) {
			return Endpoint{URI: c.URI, Identity: c.Identity, Machine: true, Name: c.Name, Source: "machine " + name + " (connection " + c.Name + ")"}, nil
		}
	}
	return Endpoint{}, fmt.Errorf("Podman machine %s is running but has no system connection named %s; see: podman system connection list", name, want)
}
