package podman

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sourceos/sourceosctl/internal/container"
)

// cpuPeriod is the CFS period the CPU quota is expressed against (the kernel's default).
const cpuPeriod = 100_000

// createTimeout bounds creating a container: on vfs storage (rootless Podman without
// overlay) the server copies the image's whole root file system, which for a workspace image
// of gigabytes takes far longer than a control call on a busy disk.
const createTimeout = 10 * time.Minute

// Create creates (does not start) the container described by s and returns its ID.
func (c *Client) Create(ctx context.Context, s container.Spec) (string, error) {
	g, err := specGenerator(s)
	if err != nil {
		return "", err
	}
	cctx, cancel := c.call(ctx, createTimeout)
	defer cancel()
	resp, err := containers.CreateWithSpec(cctx, g, nil)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", s.Name, err)
	}
	return resp.ID, nil
}

// specGenerator translates our plain spec into Podman's. Every hardening field is set
// explicitly, never left to the server's defaults, because servers differ (a 4.3 server
// ignores ReadWriteTmpfs; keep-id on a rootful 5.x server runs as uid 0): the post-create
// inspection then checks that the server applied them.
func specGenerator(s container.Spec) (*specgen.SpecGenerator, error) {
	if len(s.Command) == 0 {
		return nil, fmt.Errorf("container %s: no command", s.Name)
	}
	no := false
	g := specgen.NewSpecGenerator(s.Image, false)
	g.Name = s.Name
	// The whole argv is ours: an ENTRYPOINT in the image must not prefix it.
	g.Entrypoint = s.Command[:1]
	g.Command = s.Command[1:]
	g.WorkDir = s.WorkDir
	g.User = s.User
	if s.UserNS == "keep-id" {
		g.UserNS = specgen.Namespace{NSMode: specgen.KeepID}
	}
	g.Env = s.Env
	if len(s.Secrets) > 0 {
		g.EnvSecrets = map[string]string{}
		for _, sec := range s.Secrets {
			g.EnvSecrets[sec.EnvVar] = sec.Name
		}
	}
	g.Labels = s.Labels
	g.Terminal, g.Stdin = &s.TTY, &s.Stdin
	g.Init = &s.Init
	g.Remove = &no
	g.CapDrop = s.CapDrop
	g.CapAdd = s.CapAdd
	g.NoNewPrivileges = &s.NoNewPrivileges
	g.ReadOnlyFilesystem = &s.ReadOnlyRoot
	g.ReadWriteTmpfs = &no // writable places are the explicit tmpfs mounts below
	if s.SecurityLabel != "" {
		g.SelinuxOpts = []string{s.SecurityLabel}
	}
	switch s.Network {
	case "none":
		g.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	case "bridge":
		g.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
	case "host":
		g.NetNS = specgen.Namespace{NSMode: specgen.Host}
	default:
		return nil, fmt.Errorf("container %s: unknown network %q", s.Name, s.Network)
	}
	for _, o := range s.Overlays {
		g.OverlayVolumes = append(g.OverlayVolumes, &specgen.OverlayVolume{Source: o.Source, Destination: o.Target, Options: o.Options()})
	}
	for _, m := range s.Mounts {
		g.Mounts = append(g.Mounts, spec.Mount{Type: "bind", Source: m.Source, Destination: m.Target, Options: m.Options()})
	}
	for _, v := range s.Volumes {
		g.Volumes = append(g.Volumes, &specgen.NamedVolume{Name: v.Name, Dest: v.Target, Options: v.Options()})
	}
	for _, t := range s.Tmpfs {
		g.Mounts = append(g.Mounts, spec.Mount{Type: "tmpfs", Source: "tmpfs", Destination: t.Target, Options: t.Options()})
	}
	g.ResourceLimits = limits(s.Limits)
	g.Hostname = s.Hostname
	g.SeccompProfilePath = s.SeccompProfile
	for _, ns := range s.Namespaces {
		private := specgen.Namespace{NSMode: specgen.Private}
		switch ns {
		case "ipc":
			g.IpcNS = private
		case "uts":
			g.UtsNS = private
		case "pid":
			g.PidNS = private
		case "cgroup":
			g.CgroupNS = private
		default:
			return nil, fmt.Errorf("container %s: unknown namespace %q", s.Name, ns)
		}
	}
	if s.ShmSizeBytes > 0 {
		shm := s.ShmSizeBytes
		g.ShmSize = &shm
	}
	g.Umask = s.Umask
	oom := s.OOMScoreAdj
	g.OOMScoreAdj = &oom
	if len(s.Sysctls) > 0 {
		g.Sysctl = s.Sysctls
	}
	return g, nil
}

func limits(l container.Limits) *spec.LinuxResources {
	r := &spec.LinuxResources{}
	if l.MemoryBytes > 0 {
		mem := l.MemoryBytes
		r.Memory = &spec.LinuxMemory{Limit: &mem, Swap: &mem}
	}
	if l.CPUs > 0 {
		quota, period := int64(math.Round(l.CPUs*cpuPeriod)), uint64(cpuPeriod)
		r.CPU = &spec.LinuxCPU{Quota: &quota, Period: &period}
	}
	if l.Pids > 0 {
		r.Pids = &spec.LinuxPids{Limit: l.Pids}
	}
	return r
}
