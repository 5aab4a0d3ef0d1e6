package podman_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podman"
)

// replay is a Runner that answers `podman system connection list` with a recorded output.
type replay struct {
	file  string
	calls int
}

func (r *replay) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.calls++
	if name != "podman" || strings.Join(args, " ") != "system connection list --format json" {
		return nil, errors.New("unexpected command: " + name + " " + strings.Join(args, " "))
	}
	return os.ReadFile(r.file)
}

type fakeSocket struct{ fs.FileInfo }

func (fakeSocket) Mode() fs.FileMode  { return fs.ModeSocket | 0o660 }
func (fakeSocket) Name() string       { return "podman.sock" }
func (fakeSocket) Size() int64        { return 0 }
func (fakeSocket) ModTime() time.Time { return time.Time{} }
func (fakeSocket) IsDir() bool        { return false }
func (fakeSocket) Sys() any           { return nil }

func statSockets(paths ...string) func(string) (fs.FileInfo, error) {
	return func(p string) (fs.FileInfo, error) {
		for _, s := range paths {
			if s == p {
				return fakeSocket{}, nil
			}
		}
		return nil, fs.ErrNotExist
	}
}

func TestResolve(t *testing.T) {
	const rootless, rootful = "/run/user/1000/podman/podman.sock", "/run/podman/podman.sock"
	tests := []struct {
		name    string
		flag    string
		env     map[string]string
		uid     int
		sockets []string
		goos    string
		want    podman.Endpoint
		wantErr string
	}{
		{name: "flag URI wins", flag: "unix:///x.sock", env: map[string]string{"CONTAINER_HOST": "tcp://h:1"}, sockets: []string{rootless},
			want: podman.Endpoint{URI: "unix:///x.sock", Source: "--connection"}},
		{name: "flag names a connection", flag: "testconn",
			want: podman.Endpoint{URI: "ssh://core@127.0.0.1:2222/run/user/1000/podman/podman.sock", Identity: "/root/.ssh/id_test", Name: "testconn", Source: "--connection (connection testconn)"}},
		{name: "unknown connection name", flag: "nope",
			wantErr: `--connection: no Podman connection named "nope" (known: tcpconn, testconn); list them with: podman system connection list`},
		{name: "CONTAINER_CONNECTION before CONTAINER_HOST", env: map[string]string{"CONTAINER_CONNECTION": "tcpconn", "CONTAINER_HOST": "unix:///h.sock"},
			want: podman.Endpoint{URI: "tcp://127.0.0.1:8888", Name: "tcpconn", Source: "CONTAINER_CONNECTION (connection tcpconn)"}},
		{name: "CONTAINER_HOST with ssh key", env: map[string]string{"CONTAINER_HOST": "ssh://u@h/run/podman.sock", "CONTAINER_SSHKEY": "/k"}, sockets: []string{rootless},
			want: podman.Endpoint{URI: "ssh://u@h/run/podman.sock", Identity: "/k", Source: "CONTAINER_HOST"}},
		{name: "npipe is refused with a reason", flag: "npipe:////./pipe/podman",
			wantErr: `--connection: "npipe:////./pipe/podman" is not a Podman URI; use unix:///path/podman.sock, tcp://host:port or ssh://user@host/path (npipe:// is not supported by the API client)`},
		{name: "rootless socket first", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, sockets: []string{rootless, rootful},
			want: podman.Endpoint{URI: "unix://" + rootless, Source: "rootless socket"}},
		{name: "rootless without XDG_RUNTIME_DIR", uid: 1000, sockets: []string{rootless},
			want: podman.Endpoint{URI: "unix://" + rootless, Source: "rootless socket"}},
		{name: "falls back to rootful", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, sockets: []string{rootful},
			want: podman.Endpoint{URI: "unix://" + rootful, Source: "rootful socket"}},
		{name: "root uses the rootful socket", uid: 0, sockets: []string{rootful},
			want: podman.Endpoint{URI: "unix://" + rootful, Source: "rootful socket"}},
		{name: "nothing found, rootless", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"},
			wantErr: "no Podman API socket found (tried /run/user/1000/podman/podman.sock, /run/podman/podman.sock)"},
		{name: "macOS without a machine", goos: "darwin",
			wantErr: "no Podman API socket found (tried --connection, CONTAINER_CONNECTION, CONTAINER_HOST, a Podman machine)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goos := tt.goos
			if goos == "" {
				goos = "linux"
			}
			r := podman.Resolver{
				Getenv: func(k string) string { return tt.env[k] },
				GOOS:   goos, UID: tt.uid,
				Runner: &replay{file: "testdata/connection-list-4.3.json"},
				Stat:   statSockets(tt.sockets...),
			}
			got, err := r.Resolve(context.Background(), tt.flag, "")
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("endpoint = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveHintsAtStart(t *testing.T) {
	for _, uid := range []int{0, 1000} {
		r := podman.Resolver{Getenv: func(string) string { return "" }, GOOS: "linux", UID: uid, Stat: statSockets()}
		_, err := r.Resolve(context.Background(), "", "")
		var nf *podman.NotFoundError
		if !errors.As(err, &nf) || nf.Hint() != "sourceosctl agent-machine start" {
			t.Errorf("uid %d: error %v, want the hint to run start", uid, err)
		}
	}
}

func TestServiceEnvironmentIsLocal(t *testing.T) {
	got := podman.LocalEnv([]string{"PATH=/bin", "CONTAINER_HOST=", "CONTAINER_CONNECTION=m", "CONTAINER_SSHKEY=/k", "HOME=/h"})
	if strings.Join(got, " ") != "PATH=/bin HOME=/h" {
		t.Fatalf("env = %v, want only PATH and HOME", got)
	}
}
