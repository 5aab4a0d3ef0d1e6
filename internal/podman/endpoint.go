package podman

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// Endpoint is a resolved Podman API address.
type Endpoint struct {
	URI      string `json:"uri"`                // unix://, tcp:// or ssh://
	Identity string `json:"identity,omitempty"` // ssh private key path
	Machine  bool   `json:"machine,omitempty"`  // a Podman machine's connection
	Name     string `json:"name,omitempty"`     // connection name, when it had one
	Source   string `json:"source"`             // how it was chosen, for doctor and -v
}

// Connection is one entry of `podman system connection list --format json` (recorded from
// Podman 4.3: Name, URI, Identity, IsMachine, Default).
type Connection struct {
	Name      string
	URI       string
	Identity  string
	IsMachine bool
	Default   bool
}

// NotFoundError says no Podman API could be found; Fix is the command that starts one.
type NotFoundError struct {
	Tried []string
	Fix   string
}

func (e *NotFoundError) Error() string {
	return "no Podman API socket found (tried " + strings.Join(e.Tried, ", ") + ")"
}

// Hint returns the command that starts the API service.
func (e *NotFoundError) Hint() string { return e.Fix }

// Resolver finds the Podman API the way the podman CLI would, because the bindings only
// accept a URI: they resolve neither named connections nor CONTAINER_CONNECTION.
type Resolver struct {
	Getenv func(string) string
	GOOS   string
	UID    int
	Runner Runner
	// Stat and EvalSymlinks are the file system; TempDir is os.TempDir().
	Stat         func(string) (fs.FileInfo, error)
	EvalSymlinks func(string) (string, error)
	TempDir      string
	// Owner reports a file's owner uid; nil means FileOwner.
	Owner func(fs.FileInfo) (int, bool)
	// Machine resolves a Podman machine's endpoint (macOS, Windows, or a Linux profile that
	// names a machine). Nil when machines are not in use.
	Machine func(ctx context.Context, m machine.Ref) (Endpoint, error)
}

// Resolve applies, in order: the --connection flag (URI or name), CONTAINER_CONNECTION,
// CONTAINER_HOST, the profile's machine, then on Linux the rootless and rootful sockets.
func (r Resolver) Resolve(ctx context.Context, flag string, m machine.Ref) (Endpoint, error) {
	if flag != "" {
		if strings.Contains(flag, "://") {
			ep, err := r.fromURI(flag, "--connection")
			ep.Identity = r.Getenv("CONTAINER_SSHKEY") // as podman --url takes it
			return ep, err
		}
		return r.named(ctx, flag, "--connection")
	}
	if name := r.Getenv("CONTAINER_CONNECTION"); name != "" {
		return r.named(ctx, name, "CONTAINER_CONNECTION")
	}
	if uri := r.Getenv("CONTAINER_HOST"); uri != "" {
		ep, err := r.fromURI(uri, "CONTAINER_HOST")
		ep.Identity = r.Getenv("CONTAINER_SSHKEY")
		return ep, err
	}
	if m.Name != "" && r.Machine != nil {
		return r.Machine(ctx, m)
	}
	if r.GOOS != "linux" {
		return Endpoint{}, &NotFoundError{Tried: []string{"--connection", "CONTAINER_CONNECTION", "CONTAINER_HOST", "a Podman machine"},
			Fix: "sourceosctl agent-machine start"}
	}
	var tried []string
	if r.UID != 0 {
		if _, err := ResolveRuntimeDir(r.RuntimeEnv()); err != nil {
			tried = append(tried, "the rootless socket ("+err.Error()+")")
		}
	}
	for _, c := range r.localSockets() {
		tried = append(tried, c.path)
		if st, err := r.Stat(c.path); err == nil && st.Mode().Type() == fs.ModeSocket {
			return Endpoint{URI: "unix://" + c.path, Source: c.source}, nil
		}
	}
	return Endpoint{}, &NotFoundError{Tried: tried, Fix: "sourceosctl agent-machine start"}
}

type socketCandidate struct{ path, source string }

// RuntimeEnv is the resolver's view of what the rootless runtime directory depends on.
func (r Resolver) RuntimeEnv() RuntimeEnv {
	owner, eval := r.Owner, r.EvalSymlinks
	if owner == nil {
		owner = FileOwner
	}
	if eval == nil {
		eval = func(p string) (string, error) { return p, nil }
	}
	return RuntimeEnv{UID: r.UID, Getenv: r.Getenv, Stat: r.Stat, EvalSymlinks: eval, Owner: owner, TempDir: r.TempDir}
}

// localSockets are the sockets a local podman would use: root's rootful one, or the user's
// rootless one (in the runtime directory Podman itself would pick) and then the rootful one.
func (r Resolver) localSockets() []socketCandidate {
	rootful := socketCandidate{RootfulSocket, "rootful socket"}
	if r.UID == 0 {
		return []socketCandidate{rootful}
	}
	dir, err := ResolveRuntimeDir(r.RuntimeEnv())
	if err != nil {
		return []socketCandidate{rootful}
	}
	return []socketCandidate{{dir.Socket(), "rootless socket"}, rootful}
}

func (r Resolver) fromURI(uri, source string) (Endpoint, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "unix" && u.Scheme != "tcp" && u.Scheme != "ssh") {
		return Endpoint{}, &BadURIError{Source: source, URI: uri}
	}
	return Endpoint{URI: uri, Source: source}, nil
}

func (r Resolver) named(ctx context.Context, name, source string) (Endpoint, error) {
	conns, err := r.Connections(ctx)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%s %q: %w", source, name, err)
	}
	var names []string
	for _, c := range conns {
		if c.Name == name {
			ep, err := r.fromURI(c.URI, fmt.Sprintf("%s (connection %s)", source, name))
			ep.Identity, ep.Machine, ep.Name = c.Identity, c.IsMachine, c.Name
			return ep, err
		}
		names = append(names, c.Name)
	}
	return Endpoint{}, &UnknownConnectionError{Source: source, Name: name, Known: names}
}

// UnknownConnectionError names a connection the podman CLI does not know: a usage error.
type UnknownConnectionError struct {
	Source, Name string
	Known        []string
}

func (e *UnknownConnectionError) Error() string {
	known := "none are defined"
	if len(e.Known) > 0 {
		known = "known: " + strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("%s: no Podman connection named %q (%s); list them with: podman system connection list", e.Source, e.Name, known)
}

// BadInput marks the error as the user's input, not the service's state: a dry run fails too.
func (e *UnknownConnectionError) BadInput() bool { return true }

// Connections lists the podman CLI's named connections.
func (r Resolver) Connections(ctx context.Context) ([]Connection, error) {
	out, err := r.Runner.Run(ctx, "podman", "system", "connection", "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("list Podman connections: %w", err)
	}
	var conns []Connection
	if err := json.Unmarshal(out, &conns); err != nil {
		return nil, fmt.Errorf("list Podman connections: unexpected output: %w", err)
	}
	return conns, nil
}

// BadURIError is a connection URI the API client cannot use: a usage error.
type BadURIError struct{ Source, URI string }

// BadInput marks the error as the user's input, not the service's state: a dry run fails too.
func (e *BadURIError) BadInput() bool { return true }

func (e *BadURIError) Error() string {
	return fmt.Sprintf("%s: %q is not a Podman URI; use unix:///path/podman.sock, tcp://host:port or ssh://user@host/path (npipe:// is not supported by the API client)", e.Source, e.URI)
}
