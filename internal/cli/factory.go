package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/term"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/profiles"
)

// IOStreams are the process's standard streams and what we know about them.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer // data
	ErrOut io.Writer // progress, ✓ lines, warnings, errors

	InTTY, OutTTY, ErrTTY bool
	Color                 bool // only on a terminal and without NO_COLOR
}

// Factory holds the process's dependencies. Everything that reads the environment, the clock
// or the platform goes through it, so commands can be tested with fakes; expensive
// dependencies (the Podman connection) are built lazily, so --help, --dry-run, doctor and
// evidence verify work with the Podman socket down.
type Factory struct {
	IO      *IOStreams
	Getenv  func(string) string
	Environ func() []string
	Now     func() time.Time
	GOOS    string
	GOARCH  string
	UID     int
	GID     int
	Home    func() (string, error)
	WorkDir func() (string, error)
	Build   BuildInfo
	// Runner runs external commands (the podman CLI, for named connections and machines).
	Runner podman.Runner
}

// The Podman client is the engine sessions run on.
var _ agentmachine.Engine = (*podman.Client)(nil)

// BuildInfo identifies the binary; Version and Commit are set by the linker (see Makefile).
type BuildInfo struct {
	Version   string
	Commit    string
	GoVersion string
}

var (
	version = "dev"
	commit  = "unknown"
)

// NewFactory returns the factory for a real process.
func NewFactory() *Factory {
	return &Factory{
		IO:      systemIO(),
		Getenv:  os.Getenv,
		Environ: os.Environ,
		Now:     time.Now,
		GOOS:    runtime.GOOS,
		GOARCH:  runtime.GOARCH,
		UID:     os.Getuid(),
		GID:     os.Getgid(),
		Home:    os.UserHomeDir,
		WorkDir: os.Getwd,
		Build:   BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()},
		Runner:  podman.ExecRunner{},
	}
}

// LoadProfile loads the profile at path, or the built-in default for this OS when path is "".
func (f *Factory) LoadProfile(path string) (*profile.Profile, error) {
	home, err := f.Home()
	if err != nil {
		return nil, fmt.Errorf("find home directory: %w", err)
	}
	wd, err := f.WorkDir()
	if err != nil {
		return nil, fmt.Errorf("find working directory: %w", err)
	}
	env := profile.Env{Home: home, WorkDir: wd}
	if path == "" {
		name, data := profiles.Default(f.GOOS)
		return profile.LoadBytes("embedded:"+name, data, env)
	}
	path, err = profile.ResolvePath(path, home, wd)
	if err != nil {
		return nil, &agentmachine.InputError{Flag: "--profile", Err: err}
	}
	return profile.Load(path, env)
}

// Resolver finds the Podman API the way this host's podman CLI would, machines included.
func (f *Factory) Resolver() podman.Resolver {
	r := podman.Resolver{Getenv: f.Getenv, GOOS: f.GOOS, UID: f.UID, Runner: f.Runner, Stat: os.Stat}
	r.Machine = func(ctx context.Context, name string) (podman.Endpoint, error) {
		return r.MachineEndpoint(ctx, f.machines(), name)
	}
	return r
}

func (f *Factory) machines() podman.Machines {
	return podman.Machines{Runner: f.Runner, ReadFile: os.ReadFile}
}

// MachineOps adapts podman.Machines to what agentmachine needs; the two machine structs
// have the same fields, so each converts to the other.
func (f *Factory) MachineOps() agentmachine.MachineOps { return machineOps{f.machines()} }

type machineOps struct{ m podman.Machines }

func (o machineOps) List(ctx context.Context) ([]agentmachine.MachineStatus, error) {
	list, err := o.m.List(ctx)
	out := make([]agentmachine.MachineStatus, len(list))
	for i, m := range list {
		out[i] = agentmachine.MachineStatus(m)
	}
	return out, err
}

func (o machineOps) Get(ctx context.Context, name string) (agentmachine.MachineStatus, bool, error) {
	m, found, err := o.m.Get(ctx, name)
	return agentmachine.MachineStatus(m), found, err
}

func (o machineOps) StartMachine(ctx context.Context, name string) error {
	return o.m.StartMachine(ctx, name)
}
func (o machineOps) StopMachine(ctx context.Context, name string) error {
	return o.m.StopMachine(ctx, name)
}

// machineName is the profile's Podman machine, if it uses one.
func machineName(p *profile.Profile) string {
	if p.Spec.Machine == nil {
		return ""
	}
	return p.Spec.Machine.Name
}

func systemIO() *IOStreams {
	isTTY := func(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
	s := &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		InTTY: isTTY(os.Stdin), OutTTY: isTTY(os.Stdout), ErrTTY: isTTY(os.Stderr),
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	s.Color = s.ErrTTY && !noColor
	return s
}

// TestIO returns streams backed by buffers, none of them a terminal.
func TestIO() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// Dirs returns the platform directories for the current user.
func (f *Factory) Dirs() (agentmachine.Dirs, error) {
	home, err := f.Home()
	if err != nil {
		return agentmachine.Dirs{}, err
	}
	return agentmachine.DirsFor(f.GOOS, f.Getenv, home), nil
}
