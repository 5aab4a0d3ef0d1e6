package agentmachine

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartNative(t *testing.T) {
	tests := []struct {
		name      string
		resolve   error  // error from resolving the configured endpoint
		source    string // its source when resolved
		answering bool   // whether the resolved endpoint answers at first
		systemd   bool
		dryRun    bool
		action    string
		wantErr   string
		unit      bool
		spawned   bool
	}{
		{name: "an answering API is left alone", source: "rootless socket", answering: true, action: "already-running"},
		{name: "no socket, systemd: start podman.socket", resolve: errors.New("none"), systemd: true, action: "systemd-socket", unit: true},
		{name: "no socket, no systemd: spawn the service", resolve: errors.New("none"), action: "spawned-service", spawned: true},
		{name: "dry run spawns nothing", resolve: errors.New("none"), dryRun: true, action: "spawned-service"},
		{name: "dry run with systemd starts nothing", resolve: errors.New("none"), systemd: true, dryRun: true, action: "systemd-socket"},
		{name: "a stale local socket is replaced", source: "rootless socket", action: "spawned-service", spawned: true},
		{name: "CONTAINER_HOST not answering is an error, not replaced", source: "CONTAINER_HOST", wantErr: "CONTAINER_HOST) does not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var unit, spawned bool
			started := false
			d := StartDeps{
				UID: 1000, RuntimeDir: "/run/user/1000", Dirs: Dirs{State: t.TempDir()},
				Stat: func(p string) (fs.FileInfo, error) {
					if p == "/run/systemd/system" && tt.systemd {
						return os.Stat("/")
					}
					return nil, fs.ErrNotExist
				},
				ReadFile: os.ReadFile,
				Resolve: func(context.Context) (string, string, error) {
					return "unix:///run/user/1000/podman/podman.sock", tt.source, tt.resolve
				},
				Ping: func(context.Context, string) (APIStatus, error) {
					if tt.answering || started {
						return APIStatus{ServerVersion: "5.7.0"}, nil
					}
					return APIStatus{}, errors.New("connection refused")
				},
				StartUnit:      func(context.Context, bool) error { unit, started = true, true; return nil },
				Spawn:          func(string, string) (int, error) { spawned, started = true, true; return 4242, nil },
				ServiceCommand: func(s string) []string { return []string{"podman", "system", "service", "--time=0", "unix://" + s} },
				ErrOut:         &bytes.Buffer{}, Wait: time.Second,
			}
			res, err := StartNative(context.Background(), d, tt.dryRun)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tt.action || unit != tt.unit || spawned != tt.spawned {
				t.Fatalf("action %s unit %v spawned %v; want %s %v %v", res.Action, unit, spawned, tt.action, tt.unit, tt.spawned)
			}
			if tt.unit && strings.Join(res.Command, " ") != "systemctl --user start podman.socket" {
				t.Errorf("command = %v", res.Command)
			}
			if tt.spawned {
				if pid, _ := os.ReadFile(d.Dirs.ServicePID()); strings.TrimSpace(string(pid)) != "4242" {
					t.Errorf("pid file = %q", pid)
				}
			}
		})
	}
}
