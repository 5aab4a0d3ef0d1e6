package agentmachine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/profile"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// MachineOps is what machine management needs from Podman (internal/podman's Machines,
// adapted by the CLI).
type MachineOps interface {
	List(ctx context.Context) ([]machine.Info, error)
	Get(ctx context.Context, name, provider string) (machine.Info, bool, error)
	StartMachine(ctx context.Context, m machine.Info) error
	StopMachine(ctx context.Context, m machine.Info) error
}

// InitCommand is the exact `podman machine init` that creates the profile's machine: its
// cpus, memory (MiB) and disk (GiB), and --volume for only the workspace roots the profile
// allows — any --volume replaces the default shares (/Users, /private, /var/folders on
// macOS), so the VM does not see the whole home directory. WSL mounts drives itself and takes
// no --volume. The profile's provider is selected by environment variable, as every other
// machine command is run: the user's containers.conf may name another.
func InitCommand(p *profile.Profile, goos, repo string) string {
	m := p.Spec.Machine
	argv := []string{"machine", "init", m.Name}
	if m.CPUs > 0 {
		argv = append(argv, "--cpus", strconv.Itoa(m.CPUs))
	}
	if m.MemoryMiB > 0 {
		argv = append(argv, "--memory", strconv.Itoa(m.MemoryMiB))
	}
	if m.DiskGiB > 0 {
		argv = append(argv, "--disk-size", strconv.Itoa(m.DiskGiB))
	}
	provider := p.Spec.Host.Provider
	if provider != "wsl" {
		roots := m.Volumes
		if len(roots) == 0 && repo != "" {
			roots = []string{repo}
		}
		for _, r := range roots {
			argv = append(argv, "--volume", r+":"+r)
		}
	}
	return machine.Command{Provider: provider, Args: argv}.Shell(goos, ShellQuote)
}

// MachineRequest asks for the profile's machine to be started.
type MachineRequest struct {
	Profile *profile.Profile
	GOOS    string
	Repo    string // for the init command when the profile names no volumes
	DryRun  bool
	Force   bool
	Ledger  string // file listing the machines this tool started
}

// MachineResult says what start found or did.
type MachineResult struct {
	Action  string       `json:"action"` // already-running, starting, started, would-start
	Machine machine.Info `json:"machine"`
	// Command is the start command as it runs, environment included, for the client's OS
	// shell; StopCommand stops the other machine first (--force).
	Command     string `json:"command,omitempty"`
	Stopped     string `json:"stoppedOther,omitempty"`
	StopCommand string `json:"stopCommand,omitempty"`
	DryRun      bool   `json:"dryRun"`
}

// MachineConflictError says another machine is running where only one can run at a time.
type MachineConflictError struct {
	Running, Wanted, Provider string
	Stop                      string // the command that stops the running one
}

func (e *MachineConflictError) Error() string {
	return fmt.Sprintf("Podman machine %s is running, and %s machines run one at a time; %s was not started", e.Running, e.Provider, e.Wanted)
}

// Hint is the command that frees the way (sourceosctl never stops a machine it did not
// start without --force).
func (e *MachineConflictError) Hint() string {
	return e.Stop + "   # or: sourceosctl agent-machine start --force"
}

// StartMachine starts the profile's machine if it is stopped, never creating one.
func StartMachine(ctx context.Context, ops MachineOps, req MachineRequest) (*MachineResult, error) {
	name := req.Profile.Spec.Machine.Name
	m, found, err := ops.Get(ctx, name, req.Profile.Spec.Host.Provider)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, &MissingError{Component: "Podman machine " + name, Detail: "does not exist; sourceosctl never creates one unasked",
			Fix: InitCommand(req.Profile, req.GOOS, req.Repo)}
	}
	res := &MachineResult{Machine: m, DryRun: req.DryRun}
	switch m.State {
	case machine.Running:
		res.Action = "already-running"
		return res, nil
	case machine.Starting:
		res.Action = "starting"
		return res, nil
	}
	// Podman runs one VM at a time, across providers (5.4 and later say so naming the
	// provider: "podman-machine-wsl already starting or running on the wsl provider"); only
	// WSL machines, which are WSL distributions, do not require it.
	var other machine.Info
	if m.Provider != "wsl" {
		all, err := ops.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range all {
			if (o.Name != name || o.Provider != m.Provider) && o.State == machine.Running {
				other = o
				stop := machine.Stop(o).Shell(req.GOOS, ShellQuote)
				if !req.Force {
					return nil, &MachineConflictError{Running: o.Name, Wanted: name, Provider: m.Provider, Stop: stop}
				}
				res.Stopped, res.StopCommand = o.Name, stop
			}
		}
	}
	res.Command = machine.Start(m).Shell(req.GOOS, ShellQuote)
	if req.DryRun {
		res.Action = "would-start"
		return res, nil
	}
	if res.Stopped != "" {
		if err := ops.StopMachine(ctx, other); err != nil {
			return nil, err
		}
	}
	if err := ops.StartMachine(ctx, m); err != nil {
		return nil, err
	}
	if err := remember(req.Ledger, name); err != nil {
		return nil, err
	}
	if res.Machine, _, err = ops.Get(ctx, name, m.Provider); err != nil {
		return nil, err
	}
	res.Action = "started"
	return res, nil
}

// StopMachine stops the profile's machine if this tool started it (or with force). It
// returns what it did and the stop command, environment included.
func StopMachine(ctx context.Context, ops MachineOps, req MachineRequest) (string, string, error) {
	name := req.Profile.Spec.Machine.Name
	m, found, err := ops.Get(ctx, name, req.Profile.Spec.Host.Provider)
	if err != nil {
		return "", "", err
	}
	command := machine.Stop(m).Shell(req.GOOS, ShellQuote)
	switch {
	case !found || m.State != machine.Running:
		return "not-running", "", nil
	case !req.Force && !slices.Contains(startedBy(req.Ledger), name):
		return "", "", &InputError{Err: fmt.Errorf("Podman machine %s was not started by sourceosctl, so it is left running", name),
			Fix: "sourceosctl agent-machine stop --machine --force   # or: " + command}
	case req.DryRun:
		return "would-stop", command, nil
	}
	if err := ops.StopMachine(ctx, m); err != nil {
		return "", "", err
	}
	return "stopped", command, nil
}

func startedBy(ledger string) []string {
	var names []string
	if raw, err := os.ReadFile(ledger); err == nil {
		_ = json.Unmarshal(raw, &names)
	}
	return names
}

func remember(ledger, name string) error {
	names := startedBy(ledger)
	if slices.Contains(names, name) {
		return nil
	}
	raw, _ := json.Marshal(append(names, name))
	return atomicfile.Write(ledger, raw, 0o600, atomicfile.Options{})
}

// MachineLedger is where the machines this tool started are listed.
func (d Dirs) MachineLedger() string { return filepath.Join(d.State, "machines-started.json") }
