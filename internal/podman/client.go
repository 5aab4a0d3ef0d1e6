package podman

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/bindings/system"

	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/container"
)

// Timeouts for API calls: the bindings set no deadline of their own and retry three times,
// so a wedged service would otherwise hang the command.
const (
	callTimeout    = 30 * time.Second
	connectTimeout = 10 * time.Second
)

// Client talks to one Podman service. It holds two connections because an attach takes over
// its connection's transport: control calls (start, wait, inspect) use the second.
type Client struct {
	endpoint Endpoint
	conn     context.Context // for attach
	ctl      context.Context // for everything else
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

// Connect opens both connections to ep; a service that does not answer is reported as
// missing, with the command that starts one.
func Connect(ctx context.Context, ep Endpoint) (*Client, error) {
	open := func() (context.Context, error) {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		c, err := bindings.NewConnectionWithOptions(cctx, bindings.Options{URI: ep.URI, Identity: ep.Identity, Machine: ep.Machine})
		if err != nil {
			return nil, &UnreachableError{Endpoint: ep, Err: err}
		}
		// Keep the connection (stored as context values) but not cctx's deadline.
		return valuesFrom{Context: ctx, values: c}, nil
	}
	conn, err := open()
	if err != nil {
		return nil, err
	}
	ctl, err := open()
	if err != nil {
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

// Endpoint returns the endpoint the client is connected to.
func (c *Client) Endpoint() Endpoint { return c.endpoint }

func (c *Client) call(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctl, timeout)
}

// Info reports the server's version and whether it runs rootless.
func (c *Client) Info(ctx context.Context) (ServerInfo, error) {
	cctx, cancel := c.call(callTimeout)
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
	cctx, cancel := c.call(callTimeout)
	defer cancel()
	ok, err := images.Exists(cctx, ref, nil)
	if err != nil {
		return container.Image{}, false, fmt.Errorf("look up image %s: %w", ref, err)
	}
	if !ok {
		return container.Image{}, false, nil
	}
	rep, err := images.GetImage(cctx, ref, nil)
	if err != nil {
		return container.Image{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	labels := rep.Labels
	if labels == nil && rep.Config != nil {
		labels = rep.Config.Labels
	}
	return container.Image{ID: rep.ID, Digest: rep.Digest.String(), RepoDigests: rep.RepoDigests, RepoTags: rep.RepoTags, Labels: labels}, true, nil
}

// Pull fetches ref, writing the service's progress lines to progress.
func (c *Client) Pull(ctx context.Context, ref string, progress io.Writer) error {
	opts := new(images.PullOptions).WithProgressWriter(progress).WithQuiet(progress == nil)
	if _, err := images.Pull(c.ctl, ref, opts); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) error {
	cctx, cancel := c.call(callTimeout)
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
	actx, cancel := context.WithCancel(c.conn)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if err := containers.Attach(actx, id, in, out, errOut, ready, nil); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to container %s: %w", short(id), err)
	}
	return nil
}

// Wait blocks until the container exits and returns its exit code.
func (c *Client) Wait(ctx context.Context, id string) (int, error) {
	wctx, cancel := context.WithCancel(c.ctl)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	code, err := containers.Wait(wctx, id, new(containers.WaitOptions).WithCondition(nil).WithConditions([]string{"exited", "stopped"}))
	if err != nil {
		return -1, fmt.Errorf("wait for container %s: %w", short(id), err)
	}
	return int(code), nil
}

// Stop asks the container to stop, killing it after timeout.
func (c *Client) Stop(ctx context.Context, id string, timeout time.Duration) error {
	cctx, cancel := c.call(timeout + callTimeout)
	defer cancel()
	secs := uint(timeout / time.Second)
	if err := containers.Stop(cctx, id, new(containers.StopOptions).WithTimeout(secs)); err != nil {
		return fmt.Errorf("stop container %s: %w", short(id), err)
	}
	return nil
}

// Remove force-removes the container (and its anonymous volumes). It uses a fresh deadline so
// that cleanup still happens after the session's context has been cancelled.
func (c *Client) Remove(id string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctl), callTimeout)
	defer cancel()
	_, err := containers.Remove(cctx, id, new(containers.RemoveOptions).WithForce(true).WithVolumes(true))
	if err != nil {
		return fmt.Errorf("remove container %s: %w", short(id), err)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// SessionContainer is a container carrying a label, as `ps` lists it.
type SessionContainer struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	State   string            `json:"state"`
	Labels  map[string]string `json:"labels"`
	Created time.Time         `json:"created"`
	Started time.Time         `json:"started"`
}

// Containers lists containers (running only unless all) that carry label (key=value).
func (c *Client) Containers(ctx context.Context, label string, all bool) ([]SessionContainer, error) {
	cctx, cancel := c.call(callTimeout)
	defer cancel()
	list, err := containers.List(cctx, new(containers.ListOptions).WithAll(all).WithFilters(map[string][]string{"label": {label}}))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]SessionContainer, 0, len(list))
	for _, l := range list {
		sc := SessionContainer{ID: l.ID, State: l.State, Labels: l.Labels, Created: l.Created}
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
