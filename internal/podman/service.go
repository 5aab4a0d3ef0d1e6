package podman

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ServiceCommand is the command line that serves the API on socket until stopped.
func ServiceCommand(socket string) []string {
	return []string{"podman", "system", "service", "--time=0", "unix://" + socket}
}

// SpawnService starts `podman system service` on socket in its own session, detached from
// this process, with its output appended to logPath, and returns its pid.
func SpawnService(socket, logPath string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return 0, fmt.Errorf("create %s: %w", filepath.Dir(socket), err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return 0, fmt.Errorf("create %s: %w", filepath.Dir(logPath), err)
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open service log: %w", err)
	}
	defer log.Close()
	argv := ServiceCommand(socket)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = localEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = log, log
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %v: %w", argv, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
}

// ForceRemoveLocal removes a container with the podman CLI, which works on local storage
// even when the API service has died. It only applies to local unix sockets.
func ForceRemoveLocal(ep Endpoint) func(id string) error {
	if !strings.HasPrefix(ep.URI, "unix://") {
		return nil
	}
	return func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := ExecRunner{Env: localEnv(os.Environ())}.Run(ctx, "podman", "rm", "--force", "--time", "0", id)
		return err
	}
}

// StartSocketUnit asks systemd to start podman.socket (the user's unit when user is true).
func StartSocketUnit(ctx context.Context, r Runner, user bool) error {
	args := []string{"start", "podman.socket"}
	if user {
		args = append([]string{"--user"}, args...)
	}
	_, err := r.Run(ctx, "systemctl", args...)
	return err
}

// localEnv drops the variables that switch the podman CLI to a remote service: even set to
// "", CONTAINER_HOST makes podman remote, and a remote podman has no `system service`.
func localEnv(environ []string) []string {
	out := environ[:0:0]
	for _, kv := range environ {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINER_SSHKEY":
			continue
		}
		out = append(out, kv)
	}
	return out
}
