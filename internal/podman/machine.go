package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// listEntry is one element of `podman machine list --format json`: Memory and DiskSize are
// byte counts written as strings (every version from 4.0 to 6).
type listEntry struct {
	Name     string
	Running  bool
	Starting bool
	VMType   string
	CPUs     uint64
	Memory   string
	DiskSize string
}

// inspectEntry is one element of `podman machine inspect`. Podman 5 and 6 write Memory in
// MiB and DiskSize in GiB and name the configuration directory (ConfigDir); Podman 4 names
// the configuration file (ConfigPath), and on WSL writes 0 CPUs, 0 memory and the disk in
// bytes.
type inspectEntry struct {
	ConfigDir      *vmFile
	ConfigPath     *vmFile
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

// EnvRunner is a Runner that can also add to the command's environment.
type EnvRunner interface {
	Runner
	RunEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error)
}

// Machines drives `podman machine`, which has no API, on a client of any version from 4.0:
// every command that names a machine runs with the machine's provider in
// CONTAINERS_MACHINE_PROVIDER, and listing adapts to what the client accepts (see List).
type Machines struct {
	Runner   EnvRunner
	ReadFile func(string) ([]byte, error)
	GOOS     string // the client's OS: which providers exist
	// refused remembers, for one process, that the client refused --all-providers (nil: ask
	// every time).
	refused *atomic.Bool
}

// NewMachines returns a Machines that learns at its first list how the client lists machines.
func NewMachines(r EnvRunner, readFile func(string) ([]byte, error), goos string) Machines {
	return Machines{Runner: r, ReadFile: readFile, GOOS: goos, refused: &atomic.Bool{}}
}

// Providers are the machine providers Podman has on each client OS, default first. qemu is
// macOS's only provider in Podman 4; Podman 5 replaced it there with applehv and (5.2) libkrun.
var Providers = map[string][]string{
	"darwin":  {"applehv", "libkrun", "qemu"},
	"windows": {"wsl", "hyperv"},
	"linux":   {"qemu"},
}

// AllProvidersFlag is the list flag that shows every provider's machines. It arrived in
// Podman 5.3; older clients refuse it ("Error: unknown flag: --all-providers").
const AllProvidersFlag = "--all-providers"

// ListCommands are the commands List runs on a client that accepts --all-providers, and on
// one that refused it: one list per provider of the OS, each scoped by the environment.
func (m Machines) ListCommands(refused bool) []machine.Command {
	if !refused {
		return []machine.Command{{Args: []string{"machine", "list", AllProvidersFlag, "--format", "json"}}}
	}
	var cmds []machine.Command
	for _, p := range Providers[m.GOOS] {
		cmds = append(cmds, listScoped(p))
	}
	if len(cmds) == 0 { // an OS without machine providers: the user's default
		cmds = []machine.Command{listScoped("")}
	}
	return cmds
}

// listScoped lists the machines of one provider ("" the user's default).
func listScoped(provider string) machine.Command {
	return machine.Command{Provider: provider, Args: []string{"machine", "list", "--format", "json"}}
}

func (m Machines) run(ctx context.Context, c machine.Command) ([]byte, error) {
	return m.Runner.RunEnv(ctx, c.Env(), "podman", c.Args...)
}

// List returns every machine of every provider. It asks with --all-providers; a client that
// refuses the flag (Podman 4.x, 5.0–5.2, 6.x) is asked once per provider with the provider in
// the environment, and the answers are merged (a client too old to honour the variable, or
// Podman 6, which lists every provider anyway, answers each time with the same machines,
// which VMType tells apart). The refusal is remembered.
func (m Machines) List(ctx context.Context) ([]machine.Info, error) {
	if all, ok, err := m.listAll(ctx); ok || err != nil {
		return all, err
	}
	return m.listEach(ctx, m.ListCommands(true))
}

// listAll asks with --all-providers unless the client refused it before; ok is false when
// it refuses (now or before).
func (m Machines) listAll(ctx context.Context) ([]machine.Info, bool, error) {
	if m.refused != nil && m.refused.Load() {
		return nil, false, nil
	}
	out, err := m.run(ctx, m.ListCommands(false)[0])
	switch {
	case err == nil:
		all, err := parseList(out, "")
		return all, true, err
	case !flagRefused(err):
		return nil, false, fmt.Errorf("list Podman machines: %w", err)
	}
	if m.refused != nil {
		m.refused.Store(true)
	}
	return nil, false, nil
}

// listEach runs scoped lists and merges their machines. A provider this client does not have
// is not an error while another answers.
func (m Machines) listEach(ctx context.Context, cmds []machine.Command) ([]machine.Info, error) {
	var all []machine.Info
	var firstErr error
	answered := false
	for _, c := range cmds {
		out, err := m.run(ctx, c)
		if err == nil {
			var got []machine.Info
			if got, err = parseList(out, c.Provider); err == nil {
				answered = true
				for _, g := range got {
					if !slices.ContainsFunc(all, func(x machine.Info) bool { return x.Name == g.Name && x.Provider == g.Provider }) {
						all = append(all, g)
					}
				}
				continue
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("list Podman machines (%s): %w", c.String(), err)
		}
	}
	if !answered {
		return nil, firstErr
	}
	return all, nil
}

// flagRefused reports whether podman refused --all-providers as an unknown flag.
func flagRefused(err error) bool {
	return strings.Contains(err.Error(), "unknown flag: "+AllProvidersFlag)
}

// parseList reads a list's JSON; asked is the provider the list was scoped to, used when an
// entry does not name its own.
func parseList(out []byte, asked string) ([]machine.Info, error) {
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
		provider := strings.ToLower(e.VMType)
		if provider == "" {
			provider = asked
		}
		machines = append(machines, machine.Info{Name: e.Name, Provider: provider, State: state, CPUs: int(e.CPUs),
			MemoryMiB: int(bytesTo(e.Memory, 20)), DiskGiB: int(bytesTo(e.DiskSize, 30))})
	}
	return machines, nil
}

func bytesTo(s string, shift uint) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n >> shift
}

// ProviderError says the profile's machine exists only under other providers, or under
// several when the profile names none.
type ProviderError struct {
	Name   string
	Wanted string   // the profile's provider ("" when it names none)
	Found  []string // the providers that have a machine of that name
}

func (e *ProviderError) Error() string {
	if e.Wanted == "" {
		return fmt.Sprintf("there are %d Podman machines named %s (providers %s)", len(e.Found), e.Name, strings.Join(e.Found, ", "))
	}
	return fmt.Sprintf("Podman machine %s is a %s machine, not %s as the profile says (podman runs %s machines only when %s=%s)",
		e.Name, strings.Join(e.Found, " and a "), e.Wanted, e.Found[0], machine.ProviderEnv, e.Found[0])
}

// Hint says how to name the right one.
func (e *ProviderError) Hint() string {
	if e.Wanted == "" {
		return fmt.Sprintf("set spec.host.provider to %s in the profile", strings.Join(e.Found, " or "))
	}
	return fmt.Sprintf("set spec.host.provider to %s in the profile, or name a machine of provider %s in spec.machine.name", strings.Join(e.Found, " or "), e.Wanted)
}

// Get returns the named machine of the provider (any provider when empty) with the details
// only inspect gives (socket, rootful, the shared host paths from its configuration file);
// found is false when there is none. A machine of that name under another provider is a
// *ProviderError, never silently taken.
func (m Machines) Get(ctx context.Context, name, provider string) (machine.Info, bool, error) {
	all, err := m.candidates(ctx, name, provider)
	if err != nil {
		return machine.Info{}, false, err
	}
	var match []machine.Info
	var elsewhere []string
	for _, x := range all {
		switch {
		case x.Name != name:
		case provider == "" || x.Provider == provider:
			match = append(match, x)
		default:
			elsewhere = append(elsewhere, x.Provider)
		}
	}
	switch {
	case len(match) == 0 && len(elsewhere) > 0:
		return machine.Info{}, false, &ProviderError{Name: name, Wanted: provider, Found: elsewhere}
	case len(match) == 0:
		return machine.Info{}, false, nil
	case len(match) > 1:
		found := make([]string, len(match))
		for i, x := range match {
			found[i] = x.Provider
		}
		return machine.Info{}, false, &ProviderError{Name: name, Found: found}
	}
	mach := match[0]
	cmd := machine.Inspect(mach)
	out, err := m.run(ctx, cmd)
	if err != nil {
		if strings.Contains(err.Error(), "VM does not exist") { // removed since the list
			return machine.Info{}, false, nil
		}
		return machine.Info{}, false, fmt.Errorf("inspect Podman machine %s: %w", name, err)
	}
	var infos []inspectEntry
	if err := json.Unmarshal(out, &infos); err != nil || len(infos) == 0 {
		return machine.Info{}, false, fmt.Errorf("inspect Podman machine %s (%s): unexpected output", name, cmd)
	}
	in := infos[0]
	if in.State != "" {
		mach.State = in.State
	}
	mach.Rootful, mach.LastUp = in.Rootful, in.LastUp
	mach.CPUs = int(or(in.Resources.CPUs, uint64(mach.CPUs)))
	mach.MemoryMiB = int(or(unit(in.Resources.Memory, 1<<24, 20), uint64(mach.MemoryMiB)))
	mach.DiskGiB = int(or(unit(in.Resources.DiskSize, 1<<20, 30), uint64(mach.DiskGiB)))
	if podman4 := in.ConfigDir == nil && in.ConfigPath != nil; podman4 && mach.Provider == "wsl" {
		// Podman 4 asks a running WSL distribution for MemTotal-MemAvailable: memory in use,
		// not the machine's size (stopped, it says 0). WSL machines have no size of their own.
		mach.MemoryMiB = 0
	}
	if s := in.ConnectionInfo.PodmanSocket; s != nil {
		mach.Socket = s.Path
		if s.Symlink != nil && *s.Symlink != "" {
			mach.Socket = *s.Symlink // shorter: unix socket paths are limited to ~104 bytes on macOS
		}
	}
	mach.Mounts, mach.MountsUnknown = m.shares(in)
	return mach, true, nil
}

// candidates lists the machines Get chooses from: every provider's, except on a client that
// refuses --all-providers, where the provider's own list is enough when it has the machine
// (one command instead of one per provider); only when it has not are the others asked, to
// tell "absent" from "under another provider".
func (m Machines) candidates(ctx context.Context, name, provider string) ([]machine.Info, error) {
	all, ok, err := m.listAll(ctx)
	if ok || err != nil {
		return all, err
	}
	if provider != "" {
		own, err := m.listEach(ctx, []machine.Command{listScoped(provider)})
		if err == nil && slices.ContainsFunc(own, func(x machine.Info) bool { return x.Name == name && x.Provider == provider }) {
			return own, nil
		}
	}
	return m.listEach(ctx, m.ListCommands(true))
}

// or is v, or else (v is 0: not reported) the fallback from the list.
func or(v, fallback uint64) uint64 {
	if v == 0 {
		return fallback
	}
	return v
}

// unit takes inspect's value in its documented unit, or — past limit, which no real machine
// reaches in that unit (16 TiB of MiB, 1 PiB of GiB) — as bytes, which Podman 4 writes on WSL.
func unit(v, limit uint64, shift uint) uint64 {
	if v >= limit {
		return v >> shift
	}
	return v
}

// shares reads the host paths a machine shares from its configuration file, which inspect
// names (ConfigDir in Podman 5 and 6, ConfigPath — the file itself — in Podman 4) but does
// not print. When the file cannot be read the reason is returned: "unknown", never "none".
func (m Machines) shares(in inspectEntry) ([]string, string) {
	var file string
	switch {
	case in.ConfigDir != nil && in.ConfigDir.Path != "":
		file = joinLike(in.ConfigDir.Path, in.Name+".json")
	case in.ConfigPath != nil && strings.HasSuffix(in.ConfigPath.Path, ".json"):
		file = in.ConfigPath.Path
	case in.ConfigPath != nil && in.ConfigPath.Path != "":
		file = joinLike(in.ConfigPath.Path, in.Name+".json")
	default:
		return nil, "podman machine inspect names no configuration file"
	}
	if m.ReadFile == nil {
		return nil, "cannot read " + file
	}
	raw, err := m.ReadFile(file)
	if err != nil {
		return nil, "cannot read the machine's configuration " + file + ": " + rootCause(err)
	}
	var cfg struct{ Mounts []struct{ Source string } }
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, "cannot parse the machine's configuration " + file + ": " + err.Error()
	}
	out := []string{}
	for _, mt := range cfg.Mounts {
		out = append(out, mt.Source)
	}
	return out, ""
}

// joinLike joins with the separator the directory already uses: a Windows client's paths
// keep their backslashes wherever this runs.
func joinLike(dir, name string) string {
	if strings.Contains(dir, `\`) && !strings.Contains(dir, "/") {
		return strings.TrimSuffix(dir, `\`) + `\` + name
	}
	return filepath.Join(dir, name)
}

func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// StartMachine starts a machine quietly, with its provider.
func (m Machines) StartMachine(ctx context.Context, mach machine.Info) error {
	if _, err := m.run(ctx, machine.Start(mach)); err != nil {
		return fmt.Errorf("start Podman machine %s: %w", mach.Name, err)
	}
	return nil
}

// StopMachine stops a machine, with its provider.
func (m Machines) StopMachine(ctx context.Context, mach machine.Info) error {
	if _, err := m.run(ctx, machine.Stop(mach)); err != nil {
		return fmt.Errorf("stop Podman machine %s: %w", mach.Name, err)
	}
	return nil
}

// MachineEndpoint is the API endpoint of a running machine: its forwarded socket on macOS
// and Linux, or on Windows — where the bindings cannot use named pipes — its ssh connection.
func (r Resolver) MachineEndpoint(ctx context.Context, m Machines, ref machine.Ref) (Endpoint, error) {
	name := ref.Name
	mach, found, err := m.Get(ctx, name, ref.Provider)
	if err != nil {
		return Endpoint{}, err
	}
	if !found {
		return Endpoint{}, &NotFoundError{Tried: []string{"Podman machine " + name}, Fix: "sourceosctl agent-machine start"}
	}
	if mach.State != machine.Running {
		return Endpoint{}, &NotFoundError{Tried: []string{fmt.Sprintf("Podman machine %s (%s, %s)", name, mach.Provider, mach.State)}, Fix: "sourceosctl agent-machine start"}
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
