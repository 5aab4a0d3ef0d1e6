package podman_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podman"
)

func TestResolveRuntimeDir(t *testing.T) {
	dir := func(mode fs.FileMode, owner int) fakeFile { return fakeFile{mode: fs.ModeDir | mode, owner: owner} }
	tests := []struct {
		name    string
		env     map[string]string
		files   fakeFS
		want    string // the directory, or "" with wantErr
		absent  bool
		wantErr string
	}{
		{name: "XDG_RUNTIME_DIR of yours", env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"},
			files: fakeFS{"/run/user/1000": dir(0o700, 1000)}, want: "/run/user/1000"},
		{name: "XDG_RUNTIME_DIR of someone else's is refused, as Podman does", env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"},
			files: fakeFS{"/run/user/0": dir(0o700, 0)}, wantErr: "XDG_RUNTIME_DIR is /run/user/0, which belongs to uid 0, not to you (uid 1000): Podman refuses it"},
		{name: "a stale XDG_RUNTIME_DIR that cannot be created", env: map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"},
			files: fakeFS{"/run/user": dir(0o755, 0)}, wantErr: "XDG_RUNTIME_DIR is /run/user/1000, which does not exist and cannot be created by you"},
		{name: "a missing XDG_RUNTIME_DIR Podman can create", env: map[string]string{"XDG_RUNTIME_DIR": "/tmp/rt"},
			want: "/tmp/rt", absent: true},
		{name: "no XDG_RUNTIME_DIR: /run/user/UID when it is yours", files: fakeFS{"/run/user/1000": dir(0o700, 1000)}, want: "/run/user/1000"},
		{name: "no XDG_RUNTIME_DIR: not someone else's /run/user/UID", env: map[string]string{"HOME": "/home/u"},
			files: fakeFS{"/run/user/1000": dir(0o700, 0)}, want: "/tmp/podman-run-1000", absent: true},
		{name: "no XDG_RUNTIME_DIR, no /run/user/UID: /tmp/podman-run-UID, created on first use", want: "/tmp/podman-run-1000", absent: true},
		{name: "TMPDIR moves the fallback", env: map[string]string{"TMPDIR": "/scratch"},
			files: fakeFS{"/scratch": dir(0o1777, 0)}, want: "/scratch/podman-run-1000", absent: true},
		{name: "an existing /tmp/podman-run-UID of yours", files: fakeFS{"/tmp/podman-run-1000": dir(0o700, 1000)}, want: "/tmp/podman-run-1000"},
		{name: "someone else's /tmp/podman-run-UID: $HOME/rundir", env: map[string]string{"HOME": "/home/u"},
			files: fakeFS{"/tmp/podman-run-1000": dir(0o700, 0), "/home/u/rundir": dir(0o700, 1000)}, want: "/home/u/rundir"},
		{name: "someone else's /tmp/podman-run-UID and no $HOME/rundir: Podman cannot run", env: map[string]string{"HOME": "/home/u"},
			files: fakeFS{"/tmp/podman-run-1000": dir(0o700, 0)}, wantErr: "so Podman falls back to /home/u/rundir, which does not exist: Podman cannot run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := tt.env["TMPDIR"]
			if tmp == "" {
				tmp = "/tmp"
			}
			got, err := podman.ResolveRuntimeDir(podman.RuntimeEnv{UID: 1000, Getenv: func(k string) string { return tt.env[k] },
				Stat: tt.files.stat, EvalSymlinks: func(p string) (string, error) { return p, nil }, Owner: fakeOwner, TempDir: tmp})
			if tt.wantErr != "" {
				var rde *podman.RuntimeDirError
				if !errors.As(err, &rde) || !strings.Contains(err.Error(), tt.wantErr) || rde.Hint() == "" {
					t.Fatalf("error %v, want %q with a fix", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.want || got.Absent != tt.absent || got.Socket() != tt.want+"/podman/podman.sock" || got.Why == "" {
				t.Errorf("got %+v, want %s (absent %v)", got, tt.want, tt.absent)
			}
		})
	}
}
