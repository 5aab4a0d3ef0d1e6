package podman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/bindings/system"
	"github.com/containers/podman/v5/pkg/errorhandling"

	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/container"
)

// Timeouts for API calls: the bindings set no deadline of their own and retry three times,
// so a wedged service would otherwise hang the command. They are upper bounds: a caller's
// own deadline, when shorter, wins.
const (
	callTimeout    = 30 * time.Second
	connectTimeout = 10 * time.Second
)

// Client talks to one Podman service. It holds two connections because an attach takes over
// its connection's transport: control calls (start, wait, inspect) use the second. A
// connection is only a set of context values; every call takes the caller's context for its
// deadline and cancellation, merged with those values (see with).
type Client struct {
	endpoint Endpoint
	conn     context.Context // values of the connection for attach
	ctl      context.Context // values of the connection for everything else
}

// ServerInfo is what sessions and doctor need to know about the service.
type ServerInfo struct {
	Version    string `json:"version"`
	APIVersion string `json:"apiVersion"`
	Rootless   bool   `json:"rootless"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Runtime    string `json:"ociRuntime"`
	Cgroups    string `json:"cgroupVersion"`
}

// Connect opens both connections to ep, each ping bounded by ctx and connectTimeout; a
// service that does not answer is reported as unreachable, with the command that starts one.
// The client is not bound to ctx afterwards: each call brings its own.
func Connect(ctx context.Context, ep Endpoint) (*Client, error) {
	open := func() (context.Context, error) {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		c, err := bindings.NewConnectionWithOptions(cctx, bindings.Options{URI: ep.URI, Identity: ep.Identity, Machine: ep.Machine})
		if err != nil {
			return nil, &UnreachableError{Endpoint: ep, Err: err}
		}
		return c, nil
	}
	var conn, ctl context.Context
	var connErr, ctlErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); conn, connErr = open() }()
	ctl, ctlErr = open()
	wg.Wait()
	if err := errors.Join(connErr, ctlErr); err != nil {
		return nil, err
	}
	return &Client{endpoint: ep, conn: conn, ctl: ctl}, nil
}

// valuesFrom is a context that is cancelled with Context but also carries the values of
// another context: the bindings keep their connection in unexported context keys.
type valuesFrom struct {
	context.Context
	values context.Context
}

func (v valuesFrom) Value(key any) any {
	if val := v.Context.Value(key); val != nil {
		return val
	}
	return v.values.Value(key)
}

// with is the context of one control call: the caller's deadline and cancellation, the
// connection's values.
func (c *Client) with(ctx context.Context) context.Context {
	return valuesFrom{Context: ctx, values: c.ctl}
}

// call is with, bounded by timeout as well.
func (c *Client) call(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.with(ctx), timeout)
}

// cleanup is the context of a removal: it carries the caller's values but not its
// cancellation, by design — removing a container or a secret must still happen after Ctrl-C
// cancelled the session — and is bounded by callTimeout instead.
func (c *Client) cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.call(context.WithoutCancel(ctx), callTimeout)
}

// UnreachableError says the endpoint exists but the service did not answer.
type UnreachableError struct {
	Endpoint Endpoint
	Err      error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Podman API at %s (%s): %v", e.Endpoint.URI, e.Endpoint.Source, cause.Root(e.Err))
}
func (e *UnreachableError) Unwrap() error { return e.Err }

// Hint returns the command that starts the service behind the endpoint.
func (e *UnreachableError) Hint() string {
	if strings.HasPrefix(e.Endpoint.Source, "machine ") || e.Endpoint.Machine {
		return "sourceosctl agent-machine start"
	}
	if strings.HasPrefix(e.Endpoint.URI, "unix://") {
		return "podman system service --time=0 " + e.Endpoint.URI + " &"
	}
	return "podman --url " + e.Endpoint.URI + " info"
}

// ServerVersion is the service's version, learnt from the ping that opened the connection.
func (c *Client) ServerVersion() string {
	if v := bindings.ServiceVersion(c.ctl); v != nil {
		return v.String()
	}
	return ""
}

// Service returns what a session's plan needs to know about the service. For a local socket
// it comes without the slow /info call (about 200 ms on a 4.3 server): see LocalFacts.
func (c *Client) Service(ctx context.Context) (container.Service, error) {
	if rootless, cgroups, ok := LocalFacts(c.endpoint); ok {
		return container.Service{Version: c.ServerVersion(), Rootless: rootless, CgroupsVersion: cgroups, Arch: runtime.GOARCH}, nil
	}
	info, err := c.Info(ctx)
	if err != nil {
		return container.Service{}, err
	}
	return container.Service{Version: info.Version, Rootless: info.Rootless, CgroupsVersion: info.Cgroups, Arch: info.Arch}, nil
}

// Endpoint returns the endpoint the client is connected to.
func (c *Client) Endpoint() Endpoint { return c.endpoint }

// Info reports the server's version and whether it runs rootless.
func (c *Client) Info(ctx context.Context) (ServerInfo, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	info, err := system.Info(cctx, nil)
	if err != nil {
		return ServerInfo{}, fmt.Errorf("podman info: %w", err)
	}
	return ServerInfo{
		Version:    info.Version.Version,
		APIVersion: info.Version.APIVersion,
		Rootless:   info.Host.Security.Rootless,
		OS:         info.Host.OS,
		Arch:       info.Host.Arch,
		Runtime:    info.Host.OCIRuntime.Name,
		Cgroups:    info.Host.CgroupsVersion,
	}, nil
}

// Image inspects a local image; found is false when it is not in local storage.
func (c *Client) Image(ctx context.Context, ref string) (img container.Image, found bool, err error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	rep, err := images.GetImage(cctx, ref, nil)
	if isGone(err) {
		return container.Image{}, false, nil
	}
	if err != nil {
		return container.Image{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	labels := rep.Labels
	if labels == nil && rep.Config != nil {
		labels = rep.Config.Labels
	}
	var env []string
	if rep.Config != nil {
		env = rep.Config.Env
	}
	return container.Image{ID: rep.ID, Digest: rep.Digest.String(), RepoDigests: rep.RepoDigests, RepoTags: rep.RepoTags, Labels: labels, Env: env}, true, nil
}

// Pull fetches ref, writing the service's progress lines to progress. A pull takes as long
// as it takes: only ctx bounds it.
func (c *Client) Pull(ctx context.Context, ref string, progress io.Writer) error {
	return c.PullFrom(ctx, ref, true, progress)
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if err := containers.Start(cctx, id, nil); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), err)
	}
	return nil
}

// Attach streams the container's stdio until it exits or ctx ends; ready is closed once the
// stream is connected, so the container can be started without losing output. When in and
// out are terminals and the container has a TTY, the bindings put the terminal in raw mode
// and forward window resizes.
func (c *Client) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.Writer, ready chan bool) error {
	actx := valuesFrom{Context: ctx, values: c.conn}
	if err := containers.Attach(actx, id, in, out, errOut, ready, nil); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to container %s: %w", short(id), err)
	}
	return nil
}

// Wait blocks until the container exits and returns its exit code.
func (c *Client) Wait(ctx context.Context, id string) (int, error) {
	code, err := containers.Wait(c.with(ctx), id, new(containers.WaitOptions).WithCondition(nil).WithConditions([]string{"exited", "stopped"}))
	if err != nil {
		return -1, fmt.Errorf("wait for container %s: %w", short(id), err)
	}
	return int(code), nil
}

// Stop asks the container to stop, killing it after timeout. A stop is the graceful end of
// a session that a signal interrupted, so, like removal, it does not inherit the caller's
// cancellation (that cancellation is what asked for the stop); it is bounded by timeout.
func (c *Client) Stop(ctx context.Context, id string, timeout time.Duration) error {
	cctx, cancel := c.call(context.WithoutCancel(ctx), timeout+callTimeout)
	defer cancel()
	secs := uint(timeout / time.Second)
	if err := containers.Stop(cctx, id, new(containers.StopOptions).WithTimeout(secs)); err != nil && !isGone(err) {
		return fmt.Errorf("stop container %s: %w", short(id), err)
	}
	return nil
}

// isGone reports whether the service answered that the object does not exist (any more):
// for stop and remove, whose purpose is that it is gone, that is success — another process
// (the session that owns it, say) removed it first.
func isGone(err error) bool {
	var m *errorhandling.ErrorModel
	return errors.As(err, &m) && m.ResponseCode == http.StatusNotFound
}

// Remove force-removes the container (and its anonymous volumes), even after ctx was
// cancelled (see cleanup). When the service itself has died, a container on a local socket
// is removed with the podman CLI, which works on local storage without the service.
func (c *Client) Remove(ctx context.Context, id string) error {
	cctx, cancel := c.cleanup(ctx)
	defer cancel()
	_, err := containers.Remove(cctx, id, new(containers.RemoveOptions).WithForce(true).WithVolumes(true))
	if err == nil || isGone(err) {
		return nil
	}
	err = fmt.Errorf("remove container %s: %w", short(id), err)
	if force := ForceRemoveLocal(c.endpoint); force != nil {
		if cliErr := force(id); cliErr != nil {
			return errors.Join(err, cliErr)
		}
		return nil
	}
	return err
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Containers lists containers (running only unless all) that carry label (key=value).
func (c *Client) Containers(ctx context.Context, label string, all bool) ([]container.Summary, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	list, err := containers.List(cctx, new(containers.ListOptions).WithAll(all).WithFilters(map[string][]string{"label": {label}}))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]container.Summary, 0, len(list))
	for _, l := range list {
		sc := container.Summary{ID: l.ID, State: l.State, Labels: l.Labels, Created: l.Created}
		if len(l.Names) > 0 {
			sc.Name = l.Names[0]
		}
		if l.StartedAt > 0 {
			sc.Started = time.Unix(l.StartedAt, 0).UTC()
		}
		out = append(out, sc)
	}
	return out, nil
}
