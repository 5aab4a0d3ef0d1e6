package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/secrets"

	"github.com/sourceos/sourceosctl/internal/container"
)

// Inspect returns what the server reports for a container: the security-relevant fields as
// container.Observed, and the whole `podman inspect` document for evidence.
func (c *Client) Inspect(ctx context.Context, id string) (container.Observed, []byte, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	data, err := containers.Inspect(cctx, id, nil)
	if err != nil {
		return container.Observed{}, nil, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	raw, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return container.Observed{}, nil, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	return observe(data), raw, nil
}

// ExecSessions are the container's exec sessions the server lists, but those in known (a
// workspace's own joins, whose settings were sourceosctl's and cannot change).
func (c *Client) ExecSessions(ctx context.Context, id string, known map[string]bool) ([]container.ExecSession, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	data, err := containers.Inspect(cctx, id, nil)
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	var out []container.ExecSession
	for _, execID := range data.ExecIDs {
		if known[execID] {
			continue
		}
		st, err := containers.ExecInspect(cctx, execID, nil)
		if err != nil {
			continue // ended and removed meanwhile
		}
		x := container.ExecSession{ID: execID, Running: st.Running}
		if pc := st.ProcessConfig; pc != nil {
			x.Privileged, x.User, x.Command = pc.Privileged, pc.User, append([]string{pc.Entrypoint}, pc.Arguments...)
		}
		out = append(out, x)
	}
	return out, nil
}

// Changes lists what was written to the container's root file system ("A /path", "C /path",
// "D /path"), against its image.
func (c *Client) Changes(ctx context.Context, id string) ([]string, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	changes, err := containers.Diff(cctx, id, new(containers.DiffOptions).WithDiffType("container"))
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", short(id), err)
	}
	out := make([]string, 0, len(changes))
	for _, ch := range changes {
		out = append(out, ch.Kind.String()+" "+ch.Path)
	}
	return out, nil
}

func observe(d *define.InspectContainerData) container.Observed {
	o := container.Observed{EffectiveCaps: d.EffectiveCaps, AppArmor: d.AppArmorProfile, Namespaces: map[string]string{}}
	if c := d.Config; c != nil {
		o.User, o.Env, o.Umask, o.Hostname, o.Annotations = c.User, c.Env, c.Umask, c.Hostname, c.Annotations
	}
	if hc := d.HostConfig; hc != nil {
		o.CapAdd, o.CapDrop = hc.CapAdd, hc.CapDrop
		o.ReadOnlyRoot = hc.ReadonlyRootfs
		o.Privileged = hc.Privileged
		o.Init = hc.Init
		o.SecurityOpt = hc.SecurityOpt
		for _, opt := range hc.SecurityOpt {
			if opt == "no-new-privileges" || opt == "no-new-privileges:true" || opt == "no-new-privileges=true" {
				o.NoNewPrivileges = true
			}
		}
		o.UserNS = hc.UsernsMode
		o.Network = hc.NetworkMode
		o.Namespaces["ipc"], o.Namespaces["uts"], o.Namespaces["pid"], o.Namespaces["cgroup"] = hc.IpcMode, hc.UTSMode, hc.PidMode, hc.CgroupMode
		for target := range hc.Tmpfs {
			o.Tmpfs = append(o.Tmpfs, target)
		}
		o.Limits = container.Limits{MemoryBytes: hc.Memory, Pids: hc.PidsLimit}
		switch {
		case hc.NanoCpus > 0:
			o.Limits.CPUs = float64(hc.NanoCpus) / 1e9
		case hc.CpuQuota > 0 && hc.CpuPeriod > 0:
			o.Limits.CPUs = float64(hc.CpuQuota) / float64(hc.CpuPeriod)
		}
		for _, dev := range hc.Devices {
			o.Devices = append(o.Devices, dev.PathOnHost+":"+dev.PathInContainer)
		}
		for _, u := range hc.Ulimits {
			o.Ulimits = append(o.Ulimits, container.Ulimit{Name: u.Name, Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
		}
		o.ShmSize, o.OOMScoreAdj, o.GroupAdd, o.Cgroups = hc.ShmSize, hc.OomScoreAdj, hc.GroupAdd, hc.Cgroups
	}
	for _, m := range d.Mounts {
		switch m.Type {
		case "bind":
			// Once running, Podman 4.3 lists an overlay volume as a bind of its merged
			// directory, its layers in the options.
			if lower, upper, ok := overlayLayers(m.Options); ok {
				o.Overlays = append(o.Overlays, container.Overlay{Source: lower, Target: m.Destination, Upper: upper})
				continue
			}
			o.Binds = append(o.Binds, container.Mount{Source: m.Source, Target: m.Destination, ReadOnly: !m.RW})
		case "tmpfs":
			o.Tmpfs = appendUnique(o.Tmpfs, m.Destination)
		case "volume":
			o.Volumes = append(o.Volumes, container.Volume{Name: m.Name, Target: m.Destination, ReadOnly: !m.RW})
		case "overlay":
			// Podman 4.3 does not list overlay volumes at all; later servers may.
			o.Overlays = append(o.Overlays, container.Overlay{Source: m.Source, Target: m.Destination})
		default:
			o.OtherMounts = append(o.OtherMounts, fmt.Sprintf("%s %s (%s)", m.Destination, m.Name+m.Source, m.Type))
		}
	}
	return o
}

// overlayLayers are an overlay mount's lower and upper directories, from its options.
func overlayLayers(options []string) (lower, upper string, ok bool) {
	for _, opt := range options {
		if v, found := strings.CutPrefix(opt, "lowerdir="); found {
			lower, ok = v, true
		}
		if v, found := strings.CutPrefix(opt, "upperdir="); found {
			upper = v
		}
	}
	return lower, upper, ok
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// CreateSecret stores value as a Podman secret named name. The value travels only in the
// request body; it is never logged.
func (c *Client) CreateSecret(ctx context.Context, name string, value []byte) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if _, err := secrets.Create(cctx, bytes.NewReader(value), new(secrets.CreateOptions).WithName(name)); err != nil {
		return fmt.Errorf("create secret %s: %w", name, err)
	}
	return nil
}

// RemoveSecret deletes a secret; like Remove it still works after ctx was cancelled.
func (c *Client) RemoveSecret(ctx context.Context, name string) error {
	cctx, cancel := c.cleanup(ctx)
	defer cancel()
	if err := secrets.Remove(cctx, name); err != nil {
		return fmt.Errorf("remove secret %s: %w", name, err)
	}
	return nil
}
