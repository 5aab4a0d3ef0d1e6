package podman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"github.com/containers/podman/v5/pkg/specgen"

	"github.com/containers/podman/v5/pkg/bindings/volumes"
	entitiesTypes "github.com/containers/podman/v5/pkg/domain/entities/types"

	"github.com/sourceos/sourceosctl/internal/container"
)

// CreateOwnedVolume creates a named volume whose root directory uid:gid own (a volume the
// container's user fills and writes, on a service whose user namespace this host does not
// know).
func (c *Client) CreateOwnedVolume(ctx context.Context, name string, labels map[string]string, uid, gid int) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	opts := map[string]string{"o": fmt.Sprintf("uid=%d,gid=%d", uid, gid)}
	if _, err := volumes.Create(cctx, entitiesTypes.VolumeCreateOptions{Name: name, Labels: labels, Options: opts}, nil); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// transferTimeout bounds moving a volume's contents (a repository, over a slow link).
const transferTimeout = 10 * time.Minute

// VolumeExists reports whether the service has a named volume.
func (c *Client) VolumeExists(ctx context.Context, name string) (bool, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	ok, err := volumes.Exists(cctx, name, nil)
	if err != nil {
		return false, fmt.Errorf("volume %s: %w", name, err)
	}
	return ok, nil
}

// CreateVolume creates a named volume on the service's storage, labelled.
func (c *Client) CreateVolume(ctx context.Context, name string, labels map[string]string) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if _, err := volumes.Create(cctx, entitiesTypes.VolumeCreateOptions{Name: name, Labels: labels}, nil); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// ImportVolume unpacks a tar archive into a volume — how files reach a service whose file
// system this host cannot see (a machine, another host). Servers without the volume import
// endpoint (Podman 4.3) get it through a container of image that mounts the volume and is
// never started.
func (c *Client) ImportVolume(ctx context.Context, name, image string, tar io.Reader) error {
	// Read once: the first attempt consumes what it sends.
	archive, err := io.ReadAll(tar)
	if err != nil {
		return wrapVolume("import into", name, err)
	}
	cctx, cancel := c.call(ctx, transferTimeout)
	defer cancel()
	err = volumes.Import(cctx, name, bytes.NewReader(archive))
	if err == nil || !isMissingEndpoint(err) {
		return wrapVolume("import into", name, err)
	}
	return wrapVolume("import into", name, c.throughContainer(ctx, name, image, func(cctx context.Context, id string) error {
		copyFn, err := containers.CopyFromArchive(cctx, id, volumeMount, bytes.NewReader(archive))
		if err != nil {
			return err
		}
		return copyFn()
	}))
}

// ExportVolume writes a volume's contents to w as a tar archive (through a container of
// image where the server has no volume export endpoint).
func (c *Client) ExportVolume(ctx context.Context, name, image string, w io.Writer) error {
	cctx, cancel := c.call(ctx, transferTimeout)
	defer cancel()
	// Streamed into w, never held here first (w may bound what it takes); a server without the
	// endpoint answers before any byte of an archive.
	err := volumes.Export(cctx, name, w)
	if err == nil || !isMissingEndpoint(err) {
		return wrapVolume("export", name, err)
	}
	return wrapVolume("export", name, c.throughContainer(ctx, name, image, func(cctx context.Context, id string) error {
		copyFn, err := containers.CopyToArchive(cctx, id, volumeMount+"/.", w)
		if err != nil {
			return err
		}
		return copyFn()
	}))
}

// volumeMount is where throughContainer mounts the volume.
const volumeMount = "/sourceos-volume"

// throughContainer creates a container of image that mounts the volume (never started: no
// process runs), does fn with it, and removes it.
func (c *Client) throughContainer(ctx context.Context, volume, image string, fn func(context.Context, string) error) error {
	no := false
	g := specgen.NewSpecGenerator(image, false)
	g.Entrypoint, g.Command = []string{"/nonexistent"}, []string{}
	g.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	g.Remove = &no
	g.Volumes = []*specgen.NamedVolume{{Name: volume, Dest: volumeMount}}
	g.Labels = map[string]string{"dev.sourceos.agent-machine.managed": "true", "dev.sourceos.agent-machine.role": "volume-copy"}
	cctx, cancel := c.call(ctx, transferTimeout)
	defer cancel()
	resp, err := containers.CreateWithSpec(cctx, g, nil)
	if err != nil {
		return err
	}
	defer func() { _ = c.Remove(ctx, resp.ID) }()
	return fn(cctx, resp.ID)
}

// isMissingEndpoint reports a server without the endpoint (an older Podman answers 404).
func isMissingEndpoint(err error) bool {
	var e *errorhandling.ErrorModel
	return errors.As(err, &e) && e.ResponseCode == http.StatusNotFound && !strings.Contains(strings.ToLower(e.Because), "no such volume")
}

func wrapVolume(what, name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s volume %s: %w", what, name, err)
}

// RemoveVolume removes a volume no container uses (a container using it is never removed
// with it); like Remove it still works after ctx was cancelled.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	cctx, cancel := c.cleanup(ctx)
	defer cancel()
	err := volumes.Remove(cctx, name, nil)
	switch {
	case err == nil || isGone(err):
		return nil
	case strings.Contains(err.Error(), "being used"):
		return fmt.Errorf("volume %s is in use by a container (a running session?): it can be removed once that ends", name)
	}
	return fmt.Errorf("remove volume %s: %w", name, err)
}

// Volumes lists the named volumes carrying label (key=value).
func (c *Client) Volumes(ctx context.Context, label string) ([]container.VolumeSummary, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	list, err := volumes.List(cctx, new(volumes.ListOptions).WithFilters(map[string][]string{"label": {label}}))
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := make([]container.VolumeSummary, 0, len(list))
	for _, v := range list {
		out = append(out, container.VolumeSummary{Name: v.Name, Labels: v.Labels, Created: v.CreatedAt})
	}
	return out, nil
}
