package podman_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/machine"
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

// fakeFile is a file of a fake file system: its mode and its owner's uid.
type fakeFile struct {
	mode  fs.FileMode
	owner int
}

func (f fakeFile) Name() string       { return "f" }
func (f fakeFile) Size() int64        { return 0 }
func (f fakeFile) Mode() fs.FileMode  { return f.mode }
func (f fakeFile) ModTime() time.Time { return time.Time{} }
func (f fakeFile) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFile) Sys() any           { return f.owner }

func fakeOwner(fi fs.FileInfo) (int, bool) { uid, ok := fi.Sys().(int); return uid, ok }

// fakeFS is a file system of a few paths; /tmp is always there, world-writable.
type fakeFS map[string]fakeFile

func (m fakeFS) stat(p string) (fs.FileInfo, error) {
	if p == "/tmp" {
		return fakeFile{mode: fs.ModeDir | fs.ModeSticky | 0o777}, nil
	}
	if f, ok := m[p]; ok {
		return f, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}

func socketsOf(owner int, paths ...string) fakeFS {
	m := fakeFS{}
	for _, p := range paths {
		m[p] = fakeFile{mode: fs.ModeSocket | 0o660, owner: owner}
	}
	return m
}

func statSockets(paths ...string) func(string) (fs.FileInfo, error) {
	return socketsOf(1000, paths...).stat
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
		{name: "rootless socket first", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, sockets: []string{"/run/user/1000", rootless, rootful},
			want: podman.Endpoint{URI: "unix://" + rootless, Source: "rootless socket"}},
		{name: "rootless without XDG_RUNTIME_DIR, as Podman: /run/user/UID", uid: 1000, sockets: []string{"/run/user/1000", rootless},
			want: podman.Endpoint{URI: "unix://" + rootless, Source: "rootless socket"}},
		{name: "rootless without XDG_RUNTIME_DIR or /run/user/UID, as Podman: /tmp/podman-run-UID", uid: 1000, sockets: []string{"/tmp/podman-run-1000/podman/podman.sock"},
			want: podman.Endpoint{URI: "unix:///tmp/podman-run-1000/podman/podman.sock", Source: "rootless socket"}},
		{name: "falls back to rootful", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, sockets: []string{"/run/user/1000", rootful},
			want: podman.Endpoint{URI: "unix://" + rootful, Source: "rootful socket"}},
		{name: "root uses the rootful socket", uid: 0, sockets: []string{rootful},
			want: podman.Endpoint{URI: "unix://" + rootful, Source: "rootful socket"}},
		{name: "nothing found, rootless", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, sockets: []string{"/run/user/1000"},
			wantErr: "no Podman API socket found (tried /run/user/1000/podman/podman.sock, /run/podman/podman.sock)"},
		{name: "a stale XDG_RUNTIME_DIR is named in the error", uid: 1000, env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/0/gone"},
			wantErr: "no Podman API socket found (tried the rootless socket (XDG_RUNTIME_DIR is /run/user/0/gone, which does not exist and cannot be created by you (a login through su or sudo keeps another session's value): Podman cannot serve its API there), /run/podman/podman.sock)"},
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
				Stat:   dirsAndSockets(tt.uid, tt.sockets...),
				Owner:  fakeOwner,
			}
			got, err := r.Resolve(context.Background(), tt.flag, machine.Ref{})
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

// dirsAndSockets is a file system holding paths, each a socket except /run/user/UID, which
// is a private directory of uid's.
func dirsAndSockets(uid int, paths ...string) func(string) (fs.FileInfo, error) {
	m := socketsOf(uid, paths...)
	if _, ok := m["/run/user/1000"]; ok {
		m["/run/user/1000"] = fakeFile{mode: fs.ModeDir | 0o700, owner: uid}
	}
	return m.stat
}

func TestResolveHintsAtStart(t *testing.T) {
	for _, uid := range []int{0, 1000} {
		r := podman.Resolver{Getenv: func(string) string { return "" }, GOOS: "linux", UID: uid, Stat: statSockets(), Owner: fakeOwner}
		_, err := r.Resolve(context.Background(), "", machine.Ref{})
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
