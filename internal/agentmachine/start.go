package agentmachine

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
)

// StartDeps are what `start` needs on a host without a Podman machine.
type StartDeps struct {
	UID int
	// RuntimeDir is the rootless runtime directory Podman uses, or RuntimeDirErr why Podman
	// cannot find one in this environment.
	RuntimeDir    string
	RuntimeDirErr error
	Dirs          Dirs
	Stat          func(string) (fs.FileInfo, error)
	ReadFile      func(string) ([]byte, error)
	// Resolve finds the configured endpoint; Ping asks it for its status.
	Resolve func(ctx context.Context) (uri, source string, err error)
	Ping    func(ctx context.Context, uri string) (APIStatus, error)
	// StartUnit starts systemd's podman.socket; Spawn starts `podman system service`.
	StartUnit      func(ctx context.Context, user bool) error
	Spawn          func(socket, logPath string) (int, error)
	ServiceCommand func(socket string) []string
	ErrOut         io.Writer
	Wait           time.Duration // how long the API may take to answer after starting
}

// StartResult says what start found or did.
type StartResult struct {
	Action  string    `json:"action"` // already-running, systemd-socket, spawned-service
	URI     string    `json:"uri"`
	Source  string    `json:"source"`
	Command []string  `json:"command,omitempty"`
	Log     string    `json:"log,omitempty"`
	PID     int       `json:"pid,omitempty"`
	API     APIStatus `json:"api"`
	DryRun  bool      `json:"dryRun"`
}

// ServiceLog and ServicePID are where a service started by sourceosctl logs and is recorded.
func (d Dirs) ServiceLog() string { return filepath.Join(d.State, "podman-service.log") }
func (d Dirs) ServicePID() string { return filepath.Join(d.State, "podman-service.pid") }

// StartNative makes sure the local Podman API answers: an endpoint that already answers is
// left alone; otherwise systemd's socket unit is started where systemd manages the session,
// or `podman system service` is started in the background. A dry run says which and changes
// nothing. Endpoints set explicitly (--connection, CONTAINER_HOST) are never replaced by a
// local service: if they do not answer, that is the error.
func StartNative(ctx context.Context, d StartDeps, dryRun bool) (*StartResult, error) {
	uri, source, err := d.Resolve(ctx)
	if err == nil {
		st, pingErr := d.Ping(ctx, uri)
		if pingErr == nil {
			return &StartResult{Action: "already-running", URI: uri, Source: source, API: st, DryRun: dryRun}, nil
		}
		if !strings.Contains(source, "socket") {
			return nil, &MissingError{Component: "Podman API", Detail: fmt.Sprintf("%s (%s) does not answer: %v", uri, source, pingErr),
				Fix: "start the service that " + source + " points to, or unset it to use the local socket"}
		}
	}
	if d.UID != 0 && d.RuntimeDirErr != nil {
		return nil, d.RuntimeDirErr
	}
	socket := d.localSocket()
	res := &StartResult{URI: "unix://" + socket, Source: "started by sourceosctl", DryRun: dryRun}
	if _, err := d.Stat("/run/systemd/system"); err == nil {
		res.Action = "systemd-socket"
		res.Command = []string{"systemctl", "start", "podman.socket"}
		if d.UID != 0 {
			res.Command = []string{"systemctl", "--user", "start", "podman.socket"}
		}
		if dryRun {
			return res, nil
		}
		if err := d.StartUnit(ctx, d.UID != 0); err != nil {
			return nil, &MissingError{Component: "Podman API", Detail: "systemd could not start podman.socket: " + err.Error(), Fix: strings.Join(res.Command, " ")}
		}
	} else {
		res.Action = "spawned-service"
		res.Command = d.ServiceCommand(socket)
		res.Log = d.Dirs.ServiceLog()
		if dryRun {
			return res, nil
		}
		if res.PID, err = d.Spawn(socket, res.Log); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(d.Dirs.ServicePID(), []byte(strconv.Itoa(res.PID)+"\n"), 0o600, atomicfile.Options{}); err != nil {
			fmt.Fprintf(d.ErrOut, "! could not record the service's pid: %v\n", err)
		}
	}
	st, err := d.waitForAPI(ctx, res.URI)
	if err != nil {
		detail := fmt.Sprintf("started, but %s did not answer within %s: %v", res.URI, d.Wait, err)
		if tail := d.logTail(res.Log); tail != "" {
			detail += "\nlast lines of " + res.Log + ":\n" + tail
		}
		return nil, &MissingError{Component: "Podman API", Detail: detail, Fix: "cat " + res.Log}
	}
	res.API = st
	return res, nil
}

// logTail returns the last lines of the service log, to show why it did not come up.
func (d StartDeps) logTail(path string) string {
	if path == "" || d.ReadFile == nil {
		return ""
	}
	b, err := d.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// localSocket is where Podman itself would serve its API for this user.
func (d StartDeps) localSocket() string {
	if d.UID == 0 {
		return "/run/podman/podman.sock"
	}
	return filepath.Join(d.RuntimeDir, "podman", "podman.sock")
}

func (d StartDeps) waitForAPI(ctx context.Context, uri string) (APIStatus, error) {
	deadline := time.Now().Add(d.Wait)
	fmt.Fprintf(d.ErrOut, "Waiting for the Podman API at %s ", uri)
	defer fmt.Fprintln(d.ErrOut)
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := d.Ping(ctx, uri)
		if err == nil {
			return st, nil
		}
		lastErr = err
		fmt.Fprint(d.ErrOut, ".")
		select {
		case <-ctx.Done():
			return APIStatus{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return APIStatus{}, lastErr
}
