package agentmachine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// scriptedRunner answers commands from a table.
type scriptedRunner map[string]string

func (r scriptedRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	key := strings.TrimSpace(name + " " + strings.Join(args, " "))
	if out, ok := r[key]; ok {
		return []byte(out), nil
	}
	return nil, errors.New(key + ": not scripted")
}

type hintErr struct{ msg, hint string }

func (e hintErr) Error() string { return e.msg }
func (e hintErr) Hint() string  { return e.hint }

func baseDeps(t *testing.T) DoctorDeps {
	prof, err := profile.Parse("p.yaml", []byte(testProfile))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	return DoctorDeps{
		GOOS: "linux", GOARCH: "amd64", UID: 1000, Username: "u",
		Getenv: func(k string) string { return map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}[k] },
		Runner: scriptedRunner{"uname -r": "6.1.0", "podman --version": "podman version 5.7.0", "git --version": "git version 2.39.5",
			"git -C " + repo + " rev-parse --is-inside-work-tree": "true"},
		LookPath: func(n string) (string, error) {
			if n == "nix" {
				return "", errors.New("not found")
			}
			return "/usr/bin/" + n, nil
		},
		ReadFile: func(string) ([]byte, error) { return []byte("u:100000:65536\n"), nil },
		Stat: func(p string) (fs.FileInfo, error) {
			if p == "/sys/fs/cgroup/cgroup.controllers" {
				return os.Stat("/etc/hostname")
			}
			return os.Stat(p)
		},
		API: func(context.Context) (APIStatus, error) {
			return APIStatus{URI: "unix:///run/user/1000/podman/podman.sock", Source: "rootless socket", ServerVersion: "5.7.0", Rootless: true, CgroupsVersion: "v2"}, nil
		},
		ImagePresent: func(context.Context, string) (bool, error) { return true, nil },
		Profile:      func() (*profile.Profile, error) { return prof, nil },
		Dirs:         Dirs{Config: t.TempDir(), State: t.TempDir()},
		Repo:         repo,
		Timeout:      2 * time.Second,
		Git:          fakeGit{},
		RuntimeDir: func() (RuntimeDirInfo, error) {
			return RuntimeDirInfo{Path: "/run/user/1000", Socket: "/run/user/1000/podman/podman.sock", Why: "XDG_RUNTIME_DIR"}, nil
		},
	}
}

// gitState is a GitReader that reads every repository as st.
type gitState fingerprint.GitState

func (g gitState) State(context.Context, string) fingerprint.GitState { return fingerprint.GitState(g) }
func (g gitState) Diff(context.Context, string) []byte                { return nil }

func find(r Report, id string) Check {
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	return Check{}
}

func TestDoctorHealthyHost(t *testing.T) {
	r := Doctor(context.Background(), baseDeps(t))
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			t.Errorf("%s failed: %s", c.ID, c.Finding)
		}
	}
	if got := find(r, "signing-key"); got.Status != StatusWarn || !strings.Contains(got.Finding, "created on first use") {
		t.Errorf("signing key check = %+v", got)
	}
	if got := find(r, "nix"); got.Status != StatusOK || got.Finding != "not installed (optional)" {
		t.Errorf("nix absent must not warn: %+v", got)
	}
	if r.Summary.OK+r.Summary.Warnings+r.Summary.Failures != len(r.Checks) {
		t.Errorf("summary %+v does not add up to %d checks", r.Summary, len(r.Checks))
	}
}

func TestDoctorFindings(t *testing.T) {
	tests := []struct {
		name   string
		change func(*DoctorDeps)
		id     string
		status string
		want   string // in finding or fix
	}{
		{"podman missing", func(d *DoctorDeps) {
			look := d.LookPath
			d.LookPath = func(n string) (string, error) {
				if n == "podman" {
					return "", errors.New("nope")
				}
				return look(n)
			}
		}, "podman-cli", StatusFail, "sudo apt-get install podman"},
		{"podman 3", func(d *DoctorDeps) { d.Runner.(scriptedRunner)["podman --version"] = "podman version 3.4.4" }, "podman-cli", StatusFail, "4.0 or newer is required"},
		{"podman 4.3", func(d *DoctorDeps) { d.Runner.(scriptedRunner)["podman --version"] = "podman version 4.3.1" }, "podman-cli", StatusWarn, "4.4 or newer is recommended"},
		{"podman on macOS", func(d *DoctorDeps) {
			d.GOOS = "darwin"
			look := d.LookPath
			d.LookPath = func(n string) (string, error) {
				if n == "podman" {
					return "", errors.New("nope")
				}
				return look(n)
			}
		}, "podman-cli", StatusFail, "brew install podman"},
		{"no API", func(d *DoctorDeps) {
			d.API = func(context.Context) (APIStatus, error) {
				return APIStatus{}, hintErr{"no Podman API socket found", "systemctl --user start podman.socket"}
			}
		}, "podman-api", StatusFail, "systemctl --user start podman.socket"},
		{"hanging API probe", func(d *DoctorDeps) {
			d.Timeout = 100 * time.Millisecond
			d.API = func(ctx context.Context) (APIStatus, error) {
				<-ctx.Done()
				time.Sleep(time.Hour)
				return APIStatus{}, nil
			}
		}, "podman-api", StatusFail, "no answer within 100ms"},
		{"no subuid range", func(d *DoctorDeps) { d.ReadFile = func(string) ([]byte, error) { return []byte("other:1:2\n"), nil } }, "rootless", StatusFail, "usermod --add-subuids"},
		{"cgroups v1", func(d *DoctorDeps) { d.Stat = os.Stat }, "rootless", StatusWarn, "cannot enforce cpu, memory and pids limits"},
		{"repo missing", func(d *DoctorDeps) { d.Repo = "/nonexistent/repo" }, "repo", StatusFail, "does not exist"},
		{"repo not git", func(d *DoctorDeps) {
			d.Git = gitState{Absent: "not a git work tree", Reader: "git"}
		}, "repo", StatusWarn, "is readable but not a git work tree: evidence will carry no commit"},
		{"repo readable as a git work tree", func(d *DoctorDeps) {}, "repo", StatusOK, "is a git work tree (main at aaaaaaaaaaaa)"},
		{"another user's repo is read, never re-initialised", func(d *DoctorDeps) {
			d.UID = 4242
			d.Git = gitState{Commit: strings.Repeat("d", 40), Branch: "dev", Reader: "go-git"}
		}, "repo", StatusOK, "read with go-git, as sessions read it: git refuses another user's repository"},
		{"an unreadable repository gets no harmful fix", func(d *DoctorDeps) {
			d.Git = gitState{Absent: "go-git cannot read this repository (install git to read it): unsupported extension", Reader: "go-git"}
		}, "repo", StatusWarn, "go-git cannot read this repository"},
		{"runtime directory found without XDG_RUNTIME_DIR", func(d *DoctorDeps) {
			d.Stat = func(p string) (fs.FileInfo, error) {
				if p == "/sys/fs/cgroup/cgroup.controllers" {
					return os.Stat("/etc/hostname")
				}
				return os.Stat(p)
			}
			d.RuntimeDir = func() (RuntimeDirInfo, error) {
				return RuntimeDirInfo{Path: "/tmp/podman-run-1000", Socket: "/tmp/podman-run-1000/podman/podman.sock", Why: "XDG_RUNTIME_DIR is not set; Podman falls back to /tmp/podman-run-1000"}, nil
			}
		}, "rootless", StatusOK, "runtime directory /tmp/podman-run-1000 (XDG_RUNTIME_DIR is not set; Podman falls back to /tmp/podman-run-1000), API socket /tmp/podman-run-1000/podman/podman.sock"},
		{"a runtime directory Podman cannot use", func(d *DoctorDeps) {
			d.RuntimeDir = func() (RuntimeDirInfo, error) {
				return RuntimeDirInfo{}, hintErr{"XDG_RUNTIME_DIR is /run/user/1002, which does not exist", "unset XDG_RUNTIME_DIR"}
			}
		}, "rootless", StatusFail, "unset XDG_RUNTIME_DIR"},
		{"bad profile", func(d *DoctorDeps) {
			d.Profile = func() (*profile.Profile, error) { return nil, errors.New("p.yaml:3: spec: unknown field") }
		}, "profile", StatusFail, "p.yaml:3: spec: unknown field"},
		{"key readable by others", func(d *DoctorDeps) {
			priv, _ := d.Dirs.SigningKeyPaths()
			_ = os.MkdirAll(d.Dirs.Config+"/keys", 0o700)
			_ = os.WriteFile(priv, []byte("k"), 0o644)
		}, "signing-key", StatusFail, "chmod 600"},
		{"machine shares /Users", func(d *DoctorDeps) {
			d.GOOS = "darwin"
			d.Getenv = func(k string) string { return map[string]string{"HOME": "/Users/u"}[k] }
			d.Machine = func(context.Context, machine.Ref) (machine.Info, error) {
				return machine.Info{Name: "m", Provider: "applehv", State: machine.Running, CPUs: 4, MemoryMiB: 8192, Mounts: []string{"/Users", "/private"}}, nil
			}
			prof, _ := profile.Parse("p.yaml", []byte(strings.Replace(testProfile, "host: {os: linux}", "host: {os: darwin}\n  machine: {name: m}", 1)))
			d.Profile = func() (*profile.Profile, error) { return prof, nil }
		}, "machine", StatusWarn, "so the container allowlist is the only wall around your files"},
		{"machine shares only ~/dev", func(d *DoctorDeps) {
			d.GOOS = "darwin"
			d.Getenv = func(k string) string { return map[string]string{"HOME": "/Users/u"}[k] }
			d.Machine = func(context.Context, machine.Ref) (machine.Info, error) {
				return machine.Info{Name: "m", Provider: "applehv", State: machine.Running, CPUs: 4, MemoryMiB: 8192, Mounts: []string{"/Users/u/dev"}}, nil
			}
			prof, _ := profile.Parse("p.yaml", []byte(strings.Replace(testProfile, "host: {os: linux}", "host: {os: darwin}\n  machine: {name: m}", 1)))
			d.Profile = func() (*profile.Profile, error) { return prof, nil }
		}, "machine", StatusOK, "m (applehv): running, 4 cpus, 8192 MiB, shares /Users/u/dev"},
		{"image absent", func(d *DoctorDeps) {
			d.ImagePresent = func(context.Context, string) (bool, error) { return false, nil }
		}, "image", StatusWarn, "sourceosctl agent-machine image build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := baseDeps(t)
			tt.change(&d)
			start := time.Now()
			r := Doctor(context.Background(), d)
			if time.Since(start) > time.Minute {
				t.Fatal("doctor did not bound a hanging probe")
			}
			c := find(r, tt.id)
			if c.Status != tt.status || !strings.Contains(c.Finding+" "+c.Fix, tt.want) {
				t.Fatalf("%s = %+v; want %s with %q", tt.id, c, tt.status, tt.want)
			}
			if c.Status != StatusOK && c.Status != StatusWarn && c.Fix == "" && tt.id != "podman-api" {
				t.Errorf("a failed check without a fix: %+v", c)
			}
			if tt.id == "repo" && strings.Contains(c.Fix, "init") && !strings.Contains(c.Finding, "not a git work tree") {
				t.Errorf("doctor suggests git init for a repository it could not read: %+v", c)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string][2]int{"podman version 4.3.1": {4, 3}, "podman version 5.7.0-dev": {5, 7}, "git version 2.39.5": {2, 39}} {
		maj, min, ok := ParseVersion(in)
		if !ok || maj != want[0] || min != want[1] {
			t.Errorf("ParseVersion(%q) = %d.%d %v", in, maj, min, ok)
		}
	}
}

// TestDoctorReportsLeftoverCopies: a copy waiting for review is counted; one whose work could
// not be brought back (it holds work only it has) or whose session left no result is a
// warning that says how to look and remove.
func TestDoctorReportsLeftoverCopies(t *testing.T) {
	d := baseDeps(t)
	if got := find(Doctor(context.Background(), d), "copies"); got.Status != StatusOK || got.Finding != "no session copies" {
		t.Fatalf("no copies: %+v", got)
	}
	save := func(session string, change func(*repocopy.Copy)) {
		c := &repocopy.Copy{Session: session, Repo: "/home/u/app", Branch: "agent/" + session, Dir: filepath.Join(repocopy.CopiesDir(d.Dirs.State), session)}
		change(c)
		if err := os.MkdirAll(filepath.Join(c.Dir, "upper"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Dir, "upper", "work.txt"), make([]byte, 2048), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
	}
	save("s1", func(c *repocopy.Copy) { c.Result = &repocopy.Result{Changed: true, Head: strings.Repeat("a", 40)} })
	got := find(Doctor(context.Background(), d), "copies")
	if got.Status != StatusOK || !strings.Contains(got.Finding, "1 to review") || !strings.Contains(got.Finding, "KiB on disk") || !strings.Contains(got.Fix, "merge or discard") {
		t.Errorf("one to review: %+v", got)
	}
	save("s2", func(c *repocopy.Copy) { c.CollectError = "the collector exited 1" })
	got = find(Doctor(context.Background(), d), "copies")
	if got.Status != StatusWarn || !strings.Contains(got.Finding, "1 not collected") || !strings.Contains(got.Fix, "discard SESSION") {
		t.Errorf("one not collected: %+v", got)
	}
}

// TestDoctorStartsTheGateway: with spec.network gateway, doctor starts a gateway where
// sessions put theirs, is refused through it, and leaves nothing behind; an unwritable place
// fails with the reason; on a machine it says the gateway runs there in a sidecar. Without the
// gateway there is no such check.
func TestDoctorStartsTheGateway(t *testing.T) {
	withNetwork := func(t *testing.T, d *DoctorDeps, network string) {
		prof, err := profile.Parse("p.yaml", []byte(strings.Replace(testProfile, "spec:\n", "spec:\n  network: "+network+"\n", 1)))
		if err != nil {
			t.Fatal(err)
		}
		d.Profile = func() (*profile.Profile, error) { return prof, nil }
	}
	d := baseDeps(t)
	runtime := t.TempDir()
	d.Getenv = func(k string) string { return map[string]string{"XDG_RUNTIME_DIR": runtime}[k] }
	withNetwork(t, &d, "gateway")
	c := find(Doctor(context.Background(), d), "egress-gateway")
	base := filepath.Join(runtime, "sourceos", "egress")
	if c.Status != StatusOK || !strings.Contains(c.Finding, "refused a destination no rule allows") {
		t.Fatalf("check %+v", c)
	}
	if left, _ := os.ReadDir(base); len(left) != 0 {
		t.Errorf("doctor left %v in %s", left, base)
	}

	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.Getenv = func(k string) string { return map[string]string{"XDG_RUNTIME_DIR": blocked}[k] }
	if c := find(Doctor(context.Background(), d), "egress-gateway"); c.Status != StatusFail || !strings.Contains(c.Finding, "cannot start") || c.Fix == "" {
		t.Errorf("unwritable base: %+v", c)
	}

	d.GOOS = "darwin"
	if c := find(Doctor(context.Background(), d), "egress-gateway"); c.Status != StatusOK || !strings.Contains(c.Finding, "in a sidecar container on machine") {
		t.Errorf("machine: %+v", c)
	}

	d = baseDeps(t)
	withNetwork(t, &d, "none")
	if c := find(Doctor(context.Background(), d), "egress-gateway"); c.ID != "" {
		t.Errorf("a gateway check without the gateway: %+v", c)
	}
}

// TestDoctorChecksTheSessionLog: doctor says whether the evidence directory has a log, how
// many entries it holds, and fails naming the first problem when a logged bundle is gone.
func TestDoctorChecksTheSessionLog(t *testing.T) {
	d := baseDeps(t)
	if got := find(Doctor(context.Background(), d), "session-log"); got.Status != StatusOK || !strings.Contains(got.Finding, "none yet") {
		t.Fatalf("no key, no log: %+v", got)
	}
	priv, pub := d.Dirs.SigningKeyPaths()
	key, err := evidence.LoadOrCreateKey(priv, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, id := range []string{"20261202t100000z-000000000001", "20261202t100001z-000000000002"} {
		dir, err := evidence.Write(d.Dirs.EvidenceDir(), id, evidence.SamplePredicate(id), []evidence.Artifact{{Name: "session.log", Data: []byte(id)}}, key)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	if got := find(Doctor(context.Background(), d), "session-log"); got.Status != StatusWarn || !strings.Contains(got.Finding, "2 bundles") {
		t.Fatalf("bundles before the log: %+v", got)
	}
	if _, err := evidencelog.Append(dirs[1], key.Signer); err != nil {
		t.Fatal(err)
	}
	if got := find(Doctor(context.Background(), d), "session-log"); got.Status != StatusOK || !strings.Contains(got.Finding, "2 entries") {
		t.Fatalf("a log of two: %+v", got)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	if got := find(Doctor(context.Background(), d), "session-log"); got.Status != StatusFail || !strings.Contains(got.Finding, "DELETED") || !strings.Contains(got.Fix, "evidence log verify") {
		t.Fatalf("a deleted bundle: %+v", got)
	}
}
