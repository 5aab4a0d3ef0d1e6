package agentmachine

import (
	"context"
	"io"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/machine"
)

// Engine is what sessions, status and stop need from Podman. internal/podman's Client
// implements it; unit tests use a fake.
type Engine interface {
	// Service says what planning needs to know about the service (rootless, cgroups, version).
	Service(ctx context.Context) (container.Service, error)
	Image(ctx context.Context, ref string) (container.Image, bool, error)
	Pull(ctx context.Context, ref string, progress io.Writer) error
	// Import makes an image from a root filesystem tarball (the collector's, see copy.go).
	Import(ctx context.Context, r io.Reader, ref string, changes []string) (string, error)
	CreateSecret(ctx context.Context, name string, value []byte) error
	Create(ctx context.Context, spec container.Spec) (string, error)
	Inspect(ctx context.Context, id string) (container.Observed, []byte, error)
	Attach(ctx context.Context, id string, in io.Reader, out, errOut io.Writer, ready chan bool) error
	Start(ctx context.Context, id string) error
	Wait(ctx context.Context, id string) (int, error)
	// Stop, Remove and RemoveSecret work even after ctx was cancelled: a signal is what asks
	// for them, and clean-up must happen however a session ends.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	RemoveSecret(ctx context.Context, name string) error
	Containers(ctx context.Context, label string, all bool) ([]container.Summary, error)
	// Named volumes carry what a service on another machine cannot get from a host path: the
	// programs a session ships there, the egress gateway's socket and its log.
	VolumeExists(ctx context.Context, name string) (bool, error)
	CreateVolume(ctx context.Context, name string, labels map[string]string) error
	// ImportVolume and ExportVolume may need a container of image (never started) where the
	// server lacks the volume import/export endpoints.
	ImportVolume(ctx context.Context, name, image string, tar io.Reader) error
	ExportVolume(ctx context.Context, name, image string, w io.Writer) error
	RemoveVolume(ctx context.Context, name string) error
	// Volumes lists the volumes carrying label (key=value): the tools' state.
	Volumes(ctx context.Context, label string) ([]container.VolumeSummary, error)
	// Exec runs a command in a running container (a workspace's join) and returns its exit
	// code; Usage samples what a running container uses.
	Exec(ctx context.Context, id string, x container.Exec, in io.Reader, out, errOut io.Writer) (int, error)
	Usage(ctx context.Context, id string) (container.Usage, error)
	// ExecSessions lists a container's exec sessions but the known ones; Changes what was
	// written to its root file system.
	ExecSessions(ctx context.Context, id string, known map[string]bool) ([]container.ExecSession, error)
	Changes(ctx context.Context, id string) ([]string, error)
}

// Connector reaches the Podman service for a profile's machine ("" when it names none),
// resolving the connection the way the podman CLI would; it never starts a service. The
// Connection it resolved is returned even when the service does not answer, and has an
// empty URI when none was found.
type Connector func(ctx context.Context, m machine.Ref) (Engine, Connection, error)

// Host is the machine sourceosctl runs on, as the caller sees it.
type Host struct {
	OS, Arch string
	UID, GID int
	Home     string
	WorkDir  string
	// RuntimeDir is the rootless runtime directory Podman uses ("" for root).
	RuntimeDir string
}

// IO are the streams a session's tool is attached to, and what is known about them.
type IO struct {
	In            io.Reader
	Out, ErrOut   io.Writer
	InTTY, OutTTY bool
}
