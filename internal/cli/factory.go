package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/image"
	machinepkg "github.com/sourceos/sourceosctl/internal/machine"
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

// Engine is everything the commands need from a Podman service: *podman.Client, or a fake
// in command tests.
type Engine interface {
	agentmachine.Engine
	image.BuildEngine
	Info(ctx context.Context) (podman.ServerInfo, error)
}

// The Podman client is the engine every command runs on.
var _ Engine = (*podman.Client)(nil)

// Factory holds the process's dependencies. Everything that reads the environment, the clock,
// the file system or the platform goes through it, so commands can be tested with fakes; the
// Podman connection is made lazily (Connect), so --help, --dry-run, doctor and evidence verify
// work with the Podman socket down.
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
	// Runner runs external commands (the podman CLI for named connections and machines,
	// tools' versions).
	Runner podman.Runner
	// Stat, EvalSymlinks, ReadFile and TempDir are the file system as resolving and reading
	// see it.
	Stat         func(string) (fs.FileInfo, error)
	EvalSymlinks func(string) (string, error)
	ReadFile     func(string) ([]byte, error)
	TempDir      string
	LookPath     func(string) (string, error)
	// Executable is this binary's path (it starts repository watchers); nil where sessions
	// start none.
	Executable func() (string, error)
	// Engine connects to a resolved endpoint. NewFactory's keeps one client per endpoint, so
	// the checks and steps of one command share a connection.
	Engine func(ctx context.Context, ep podman.Endpoint) (Engine, error)

	machinesOnce sync.Once
	machines     podman.Machines
}

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
		IO:           systemIO(),
		Getenv:       os.Getenv,
		Environ:      os.Environ,
		Now:          time.Now,
		GOOS:         runtime.GOOS,
		GOARCH:       runtime.GOARCH,
		UID:          os.Getuid(),
		GID:          os.Getgid(),
		Home:         os.UserHomeDir,
		WorkDir:      os.Getwd,
		Build:        BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()},
		Runner:       podman.ExecRunner{},
		Stat:         os.Stat,
		EvalSymlinks: filepath.EvalSymlinks,
		ReadFile:     os.ReadFile,
		TempDir:      os.TempDir(),
		LookPath:     exec.LookPath,
		Executable:   os.Executable,
		Engine:       memoised(podmanEngine),
	}
}

func podmanEngine(ctx context.Context, ep podman.Endpoint) (Engine, error) {
	return podman.Connect(ctx, ep)
}

// memoised keeps the first client made for each endpoint URI.
func memoised(connect func(context.Context, podman.Endpoint) (Engine, error)) func(context.Context, podman.Endpoint) (Engine, error) {
	var mu sync.Mutex
	clients := map[string]Engine{}
	return func(ctx context.Context, ep podman.Endpoint) (Engine, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := clients[ep.URI]; ok {
			return c, nil
		}
		c, err := connect(ctx, ep)
		if err == nil {
			clients[ep.URI] = c
		}
		return c, err
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
	r := podman.Resolver{Getenv: f.Getenv, GOOS: f.GOOS, UID: f.UID, Runner: f.Runner, Stat: f.Stat, EvalSymlinks: f.EvalSymlinks, TempDir: f.TempDir}
	r.Machine = func(ctx context.Context, m machinepkg.Ref) (podman.Endpoint, error) {
		return r.MachineEndpoint(ctx, f.Machines(), m)
	}
	return r
}

// Connect resolves the endpoint for the --connection flag (or the environment, or the
// profile's machine) and connects to it. The endpoint is returned even when the service does
// not answer.
func (f *Factory) Connect(ctx context.Context, connection string, m machinepkg.Ref) (Engine, podman.Endpoint, error) {
	ep, err := f.Resolver().Resolve(ctx, connection, m)
	if err != nil {
		return nil, ep, err
	}
	e, err := f.Engine(ctx, ep)
	return e, ep, err
}

// Connector is Connect as a session, status or stop uses it.
func (f *Factory) Connector(connection string) agentmachine.Connector {
	return func(ctx context.Context, m machinepkg.Ref) (agentmachine.Engine, agentmachine.Connection, error) {
		e, ep, err := f.Connect(ctx, connection, m)
		conn := agentmachine.Connection{URI: ep.URI, Source: ep.Source, Machine: ep.Machine}
		if err != nil {
			return nil, conn, err
		}
		return e, conn, nil
	}
}

// Machines drives `podman machine`.
// The first Machines made learns how the client lists machines; later ones share it.
func (f *Factory) Machines() podman.Machines {
	f.machinesOnce.Do(func() {
		r, ok := f.Runner.(podman.EnvRunner)
		if !ok {
			r = podman.ExecRunner{}
		}
		f.machines = podman.NewMachines(r, f.ReadFile, f.GOOS)
	})
	return f.machines
}

// RuntimeDir is the rootless runtime directory Podman uses for this user ("" for root, or
// when Podman could not find one: the resolver and doctor say why).
func (f *Factory) RuntimeDir() string {
	if f.UID == 0 || f.GOOS != "linux" {
		return ""
	}
	d, err := podman.ResolveRuntimeDir(f.Resolver().RuntimeEnv())
	if err != nil {
		return ""
	}
	return d.Path
}

// Session is the session runner with this process's dependencies.
func (f *Factory) Session(g *GlobalOptions) (*agentmachine.Session, error) {
	home, err := f.Home()
	if err != nil {
		return nil, fmt.Errorf("find home directory: %w", err)
	}
	wd, _ := f.WorkDir()
	git, _ := f.LookPath("git")
	host := agentmachine.Host{OS: f.GOOS, Arch: f.GOARCH, UID: f.UID, GID: f.GID, Home: home, WorkDir: wd,
		RuntimeDir: f.RuntimeDir()}
	dirs := agentmachine.DirsFor(f.GOOS, f.Getenv, home)
	s := &agentmachine.Session{
		Connect:     f.Connector(g.Connection),
		Host:        host,
		IO:          agentmachine.IO{In: f.IO.In, Out: f.IO.Out, ErrOut: f.IO.ErrOut, InTTY: f.IO.InTTY, OutTTY: f.IO.OutTTY},
		Getenv:      f.Getenv,
		Environ:     f.Environ,
		Now:         f.Now,
		ReadFile:    f.ReadFile,
		Dirs:        dirs,
		TempDir:     f.TempDir,
		Helper:      containerHelper(filepath.Join(dirs.State, "helper")),
		Ship:        helper.Ship,
		Collector:   collector(filepath.Join(dirs.State, "helper")),
		SFTP:        sftpServer(filepath.Join(dirs.State, "helper")),
		Git:         fingerprint.Git{Binary: git},
		GitBinary:   git,
		Runner:      f.Runner,
		LookPath:    f.LookPath,
		Version:     f.Build.Version + " (" + f.Build.Commit + ")",
		StopTimeout: stopTimeout,
		Verbose:     g.Verbose,
	}
	if w := watcherFor(f, dirs.State); w != nil {
		s.Watcher = w
	}
	return s, nil
}

// containerHelper locates (and, for a real run, installs) the in-container helper below dir.
func containerHelper(dir string) func(arch string, install bool) (agentmachine.HelperRef, error) {
	return func(arch string, install bool) (agentmachine.HelperRef, error) {
		locate := helper.Located
		if install {
			locate = helper.Install
		}
		path, digest, err := locate(dir, arch)
		return agentmachine.HelperRef{Path: path, Digest: digest}, err
	}
}

// collector installs the program that collects a copy's work below dir.
func collector(dir string) func(arch string) (agentmachine.HelperRef, error) {
	return func(arch string) (agentmachine.HelperRef, error) {
		path, digest, err := helper.InstallCollector(dir, arch)
		return agentmachine.HelperRef{Path: path, Digest: digest}, err
	}
}

func sftpServer(dir string) func(arch string, install bool) (agentmachine.HelperRef, error) {
	return func(arch string, install bool) (agentmachine.HelperRef, error) {
		locate := helper.LocatedSFTP
		if install {
			locate = helper.InstallSFTP
		}
		path, digest, err := locate(dir, arch)
		return agentmachine.HelperRef{Path: path, Digest: digest}, err
	}
}

// stopTimeout is how long a container gets to stop after Ctrl-C or SIGTERM.
const stopTimeout = 10 * time.Second

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
