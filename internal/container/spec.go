// Package container describes a hardened container as plain data: what the planner decides
// and the engine creates. It imports neither, so the plan can be printed, hashed and
// compared with what the server reports without a Podman connection.
package container

import (
	"io"
	"strconv"
	"time"
)

// Spec is everything needed to create one governed container.
type Spec struct {
	Name    string            `json:"name"`
	Image   string            `json:"image"`
	Command []string          `json:"command"`
	WorkDir string            `json:"workDir"`
	User    string            `json:"user"`             // uid:gid inside the container
	UserNS  string            `json:"userns,omitempty"` // "keep-id" when rootless
	Env     map[string]string `json:"env,omitempty"`    // non-secret values only (HOME, TERM, …)
	Secrets []Secret          `json:"secrets,omitempty"`
	Mounts  []Mount           `json:"mounts"`
	// Overlays are copy-on-write views of a host directory: the container sees Source and
	// writes into Upper, never into Source (the session's copy of the repository).
	Overlays []Overlay `json:"overlays,omitempty"`
	// Volumes are Podman named volumes, on the service's own storage: how the containers of
	// one session on a machine or remote service share what no host path can carry (the
	// egress gateway's socket, the programs sourceosctl ships there).
	Volumes []Volume          `json:"volumes,omitempty"`
	Tmpfs   []Tmpfs           `json:"tmpfs"`
	Labels  map[string]string `json:"labels"`
	Network string            `json:"network"` // "none", "bridge", or "host" (a gateway sidecar)
	// CapDrop is always ["ALL"]; CapAdd is always empty. Both are kept as data so that the
	// post-create inspection can compare them with what the server applied.
	CapDrop         []string `json:"capDrop"`
	CapAdd          []string `json:"capAdd"`
	NoNewPrivileges bool     `json:"noNewPrivileges"`
	ReadOnlyRoot    bool     `json:"readOnlyRoot"`
	Limits          Limits   `json:"limits"`
	// Init runs a minimal init as PID 1 that forwards signals and reaps zombies: a tool
	// running as PID 1 would ignore Ctrl-C and SIGTERM.
	Init  bool `json:"init"`
	TTY   bool `json:"tty"`
	Stdin bool `json:"stdin"`
	// SecurityLabel is "disable" when bind mounts are not relabelled (see the planner).
	SecurityLabel string `json:"securityLabel,omitempty"`

	// The rest is asked for explicitly, so that no default of the server's own configuration
	// (containers.conf) can apply instead; the post-create comparison checks each.
	Hostname string `json:"hostname"`
	// SeccompProfile is the seccomp profile file on the server ("" is the server's default,
	// which its configuration can set to unconfined).
	SeccompProfile string   `json:"seccompProfile,omitempty"`
	Namespaces     []string `json:"namespaces"` // private namespaces: ipc, uts, pid, cgroup
	ShmSizeBytes   int64    `json:"shmSizeBytes"`
	Umask          string   `json:"umask"`
	OOMScoreAdj    int      `json:"oomScoreAdj"`
	// Sysctls are namespaced kernel settings, set to the values a fresh namespace has.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// Ulimit is a resource limit a server reports, by Podman's name (RLIMIT_NOFILE).
type Ulimit struct {
	Name string `json:"name"`
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// DefaultSeccompProfile is where containers-common installs the default seccomp profile on
// every distribution Podman supports, Podman machines included.
const DefaultSeccompProfile = "/usr/share/containers/seccomp.json"

// Mount is a host path bound into the container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// Options are the bind mount's options, shared by the engine that creates it and the
// evidence that records it, so the two cannot drift apart. The bind is not recursive: a file
// system mounted below the source (another disk, a FUSE view of a secret store) does not come
// along — the container sees the directory it is mounted on, empty.
func (m Mount) Options() []string {
	if m.ReadOnly {
		return []string{"bind", "ro"}
	}
	return []string{"bind", "rw"}
}

// Volume mounts the named volume Name at Target.
type Volume struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
	// Chown makes the container's user own the volume (Podman's U option).
	Chown bool `json:"chown,omitempty"`
}

// Options are the volume's options, as Podman takes them.
func (v Volume) Options() []string {
	opts := []string{"rw"}
	if v.ReadOnly {
		opts = []string{"ro"}
	}
	if v.Chown {
		opts = append(opts, "U")
	}
	return opts
}

// Overlay mounts Source at Target with its writes going to Upper (Work is the overlay's
// scratch directory, on Upper's file system).
type Overlay struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Upper  string `json:"upper"`
	Work   string `json:"work"`
}

// Options are the overlay volume's options, as Podman takes them.
func (o Overlay) Options() []string {
	return []string{"upperdir=" + o.Upper, "workdir=" + o.Work}
}

// Tmpfs is a writable in-memory directory (the root filesystem is read-only).
type Tmpfs struct {
	Target    string `json:"target"`
	SizeBytes int64  `json:"sizeBytes"`
	Mode      string `json:"mode"` // octal, e.g. "1777"
	// Chown makes the container's user own it (Podman's U option), for the tool's home.
	Chown bool `json:"chown,omitempty"`
}

// Secret hands a Podman secret to the container as an environment variable. Name is the
// Podman secret's name; the value never appears in a Spec.
type Secret struct {
	Name   string `json:"name"`
	EnvVar string `json:"envVar"`
}

// Limits are the resource limits enforced by the runtime.
type Limits struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memoryBytes"`
	Pids        int64   `json:"pids"`
	// BestEffort accepts a server that cannot enforce them (rootless on cgroups v1), by the
	// profile's explicit choice; the plan says so.
	BestEffort bool `json:"bestEffort,omitempty"`
}

// Options are the tmpfs mount options, shared by the engine and the printed `podman run`
// line so the two cannot drift apart.
func (t Tmpfs) Options() []string {
	opts := []string{"rw", "nosuid", "nodev", "size=" + strconv.FormatInt(t.SizeBytes, 10), "mode=" + t.Mode}
	if t.Chown {
		opts = append(opts, "U")
	}
	return opts
}

// Image describes a local image.
type Image struct {
	ID          string   `json:"id"`
	Digest      string   `json:"digest"`
	RepoDigests []string `json:"repoDigests,omitempty"`
	RepoTags    []string `json:"repoTags,omitempty"`
	// Labels are the image's labels (version, build inputs); not part of evidence.
	Labels map[string]string `json:"-"`
	// Env is the image's environment (NAME=value): a container has it too.
	Env []string `json:"-"`
}

// Service is what planning needs to know about the Podman service that will run the
// container: whether it is rootless, its cgroup version and its version.
type Service struct {
	Version        string `json:"version"`
	Arch           string `json:"arch,omitempty"` // GOARCH of the machine the containers run on
	Rootless       bool   `json:"rootless"`
	CgroupsVersion string `json:"cgroupsVersion"` // "v1" or "v2"
}

// Build is one `podman build` of a Containerfile in a context directory.
type Build struct {
	ContextDir    string
	Containerfile string // relative to ContextDir
	Tag           string
	Args          map[string]string
	Labels        map[string]string
	Out           io.Writer // build output, line by line
}

// Summary is a container as a list shows it.
type Summary struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	State   string            `json:"state"`
	Labels  map[string]string `json:"labels"`
	Created time.Time         `json:"created"`
	Started time.Time         `json:"started"`
}

// VolumeSummary is a named volume as a listing shows it.
type VolumeSummary struct {
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Created time.Time         `json:"created"`
}

// Exec is one command run in a running container (a join of a workspace).
type Exec struct {
	Command []string
	Env     map[string]string
	User    string
	WorkDir string
	TTY     bool
	// Resize, with a TTY, carries the terminal's size: its first value, then each change
	// (an SSH client's window-change). Nil: the caller's own terminal is followed.
	Resize <-chan Size
	// Created, when set, is told the exec session's id once the server made it.
	Created func(session string)
}

// Size is a terminal's size in characters.
type Size struct{ Rows, Cols uint16 }

// Usage is what a running container uses, from the service's statistics.
type Usage struct {
	CPUPercent  float64 `json:"cpuPercent"`
	MemoryBytes uint64  `json:"memoryBytes"`
	MemoryLimit uint64  `json:"memoryLimitBytes"`
	PIDs        uint64  `json:"pids"`
}
