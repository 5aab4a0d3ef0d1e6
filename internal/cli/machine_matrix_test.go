package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/podman"
)

// versionedPodman is a podman executable that behaves like the Podman version in
// STUB_VERSION, as Podman's source and the recorded outputs in
// internal/podman/testdata/machines show each one:
//
//   - `machine list --all-providers` exists in 5.3 to 5.x only; 4.x, 5.0–5.2 and 6.x refuse it
//     with the text recorded from Podman 6 (real/error-list-all-providers-podman6.0-dev.txt,
//     replayed from that file).
//   - Before 6.0, `machine list`, `inspect`, `start` and `stop` see only the provider that
//     CONTAINERS_MACHINE_PROVIDER (from 4.6) or the OS's default names; others are
//     "NAME: VM does not exist" (define.ErrVMDoesNotExist), inspect printing [] first.
//     6.0 lists and finds every provider's machines (the named provider's first).
//   - The default provider: macOS qemu (4.x), applehv (5.x), libkrun (6.x); Windows wsl.
//
// The machines live in $STUB_DIR/store/PROVIDER/{list.json,inspect-NAME.json}; start and
// stop flip their state there. Every call is logged with the provider it ran with.
const versionedPodman = `#!/bin/sh
V="$STUB_VERSION"; maj=${V%%.*}; rest=${V#*.}; min=${rest%%.*}; ver=$((maj*100+min))
case "$STUB_OS" in
  darwin) if [ $ver -lt 500 ]; then def=qemu; elif [ $ver -lt 600 ]; then def=applehv; else def=libkrun; fi ;;
  *) def=wsl ;;
esac
prov="$def"
if [ $ver -ge 406 ] && [ -n "$CONTAINERS_MACHINE_PROVIDER" ]; then prov="$CONTAINERS_MACHINE_PROVIDER"; fi
echo "provider=$CONTAINERS_MACHINE_PROVIDER|$*" >> "$STUB_DIR/calls.log"
store="$STUB_DIR/store"
absent() { echo "Error: $1: VM does not exist" >&2; exit 125; }
# find NAME: the provider directory holding the machine, as this version looks for it
find() {
  if [ -f "$store/$prov/inspect-$1.json" ]; then echo "$store/$prov/"; return; fi
  if [ $ver -ge 600 ]; then for d in "$store"/*/; do [ -f "$d/inspect-$1.json" ] && { echo "$d"; return; }; done; fi
}
case "$*" in
  "--version") echo "podman version $V" ;;
  "machine list --all-providers --format json")
    if [ $ver -lt 503 ] || [ $ver -ge 600 ]; then cat "$REAL_DIR/error-list-all-providers-podman6.0-dev.txt" >&2; exit 125; fi
    cat "$store/all.json" ;;
  "machine list --format json")
    if [ $ver -ge 600 ]; then cat "$store/all.json"
    elif [ -f "$store/$prov/list.json" ]; then cat "$store/$prov/list.json"
    else echo "[]"; fi ;;
  "machine inspect "*)
    d=$(find "$3"); [ -n "$d" ] || { echo "[]"; absent "$3"; }
    cat "$d/inspect-$3.json" ;;
  "machine start "*)
    d=$(find "$3"); [ -n "$d" ] || absent "$3"
    sed -i 's/"Running": false/"Running": true/; s/"State": "stopped"/"State": "running"/' "$d/list.json" "$d/inspect-$3.json" "$store/all.json" ;;
  "machine stop "*)
    d=$(find "$3"); [ -n "$d" ] || absent "$3"
    sed -i 's/"Running": true/"Running": false/; s/"State": "running"/"State": "stopped"/' "$d/list.json" "$d/inspect-$3.json" "$store/all.json" ;;
  "system connection list --format json") cat "$STUB_DIR/connections.json" ;;
  *) echo "stub podman $V: unexpected arguments: $*" >&2; exit 2 ;;
esac
`

// matrixCell is one Podman version, provider and machine state.
type matrixCell struct {
	version, goos, provider, state string
}

// fixtureFor names the recorded outputs for the cell: Podman 4's own (generate-v4.go) for
// 4.x, Podman 5's (generate.go) for 5.x and 6.x, whose machine JSON did not change.
func (c matrixCell) fixtures() (list, inspect string) {
	suffix := ""
	if strings.HasPrefix(c.version, "4.") {
		suffix = "-podman4.9.4"
	}
	return "list-" + c.provider + "-" + c.state + suffix + ".json", "inspect-" + c.provider + "-" + c.state + suffix + ".json"
}

// matrix is every version × provider × state a user can have: libkrun arrived in 5.2; qemu is
// macOS's provider only before 5.0.
func matrix() []matrixCell {
	var cells []matrixCell
	for _, v := range []string{"4.9.4", "5.1.0", "5.3.1", "6.0.0"} {
		major4 := strings.HasPrefix(v, "4.")
		for _, p := range []struct{ goos, provider string }{{"darwin", "applehv"}, {"darwin", "libkrun"}, {"darwin", "qemu"}, {"windows", "wsl"}, {"windows", "hyperv"}} {
			if (p.provider == "libkrun" && (major4 || v == "5.1.0")) || (p.provider == "qemu" && !major4) {
				continue
			}
			for _, s := range []string{"running", "stopped", "never-started"} {
				cells = append(cells, matrixCell{v, p.goos, p.provider, s})
			}
		}
	}
	return cells
}

// installVersionedStub puts the cell's machine under its provider, and another machine under
// the OS's other providers (so that a command run with the wrong provider finds something
// else, or nothing).
func installVersionedStub(t testing.TB, c matrixCell) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the stub is a shell script")
	}
	dir := t.TempDir()
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("podman", []byte(versionedPodman))
	src := filepath.Join("..", "podman", "testdata", "machines")
	listFile, inspectFile := c.fixtures()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("no recorded output for %+v: %v", c, err)
		}
		return b
	}
	list := read(listFile)
	write("store/"+c.provider+"/list.json", list)
	write("store/"+c.provider+"/inspect-sourceos-agent.json", read(inspectFile))
	var all []map[string]any
	if err := json.Unmarshal(list, &all); err != nil {
		t.Fatal(err)
	}
	// A stopped machine of the same name under another provider of the OS: it must never be
	// taken for the profile's.
	for _, other := range map[string][]string{"darwin": {"applehv", "libkrun"}, "windows": {"wsl", "hyperv"}}[c.goos] {
		if other == c.provider {
			continue
		}
		decoy := fmt.Sprintf(`[{"Name": "sourceos-agent", "Default": false, "Created": "2025-01-01T00:00:00Z", "Running": false, "Starting": false, "LastUp": "0001-01-01T00:00:00Z", "VMType": %q, "CPUs": 1, "Memory": "1073741824", "DiskSize": "10737418240"}]`, other)
		write("store/"+other+"/list.json", []byte(decoy))
		write("store/"+other+"/inspect-sourceos-agent.json", []byte(`[{"Name": "sourceos-agent", "State": "stopped", "Resources": {"CPUs": 1, "Memory": 1024, "DiskSize": 10}}]`))
		var d []map[string]any
		_ = json.Unmarshal([]byte(decoy), &d)
		all = append(all, d...)
	}
	b, _ := json.MarshalIndent(all, "", "    ")
	write("store/all.json", b)
	write("connections.json", []byte(`[{"Name": "sourceos-agent", "URI": "ssh://user@127.0.0.1:61418/run/user/1000/podman/podman.sock", "Identity": "C:\\Users\\jack\\.ssh\\sourceos-agent", "IsMachine": true, "Default": true},`+
		`{"Name": "sourceos-agent-root", "URI": "ssh://root@127.0.0.1:61418/run/podman/podman.sock", "Identity": "C:\\Users\\jack\\.ssh\\sourceos-agent", "IsMachine": true, "Default": false}]`))
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("STUB_DIR", dir)
	t.Setenv("STUB_VERSION", c.version)
	t.Setenv("STUB_OS", c.goos)
	real, err := filepath.Abs(filepath.Join(src, "real"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("REAL_DIR", real)
	return dir
}

// inspected is what the cell's recorded inspect says.
type inspected struct {
	ConfigDir, ConfigPath *struct{ Path string }
	ConnectionInfo        struct {
		PodmanSocket *struct {
			Path    string
			Symlink *string `json:"symlink"`
		}
	}
	Rootful bool
}

func (c matrixCell) inspected(t *testing.T) inspected {
	_, inspectFile := c.fixtures()
	b, err := os.ReadFile(filepath.Join("..", "podman", "testdata", "machines", inspectFile))
	if err != nil {
		t.Fatal(err)
	}
	var in []inspected
	if err := json.Unmarshal(b, &in); err != nil || len(in) != 1 {
		t.Fatalf("%s: %v", inspectFile, err)
	}
	return in[0]
}

// configFile is where the machine's configuration is: ConfigDir/NAME.json (5, 6) or the
// ConfigPath file itself (4), in the client OS's separators.
func (in inspected) configFile() string {
	if in.ConfigDir != nil {
		if strings.Contains(in.ConfigDir.Path, `\`) {
			return in.ConfigDir.Path + `\sourceos-agent.json`
		}
		return in.ConfigDir.Path + "/sourceos-agent.json"
	}
	return in.ConfigPath.Path
}

// wantEndpoint is the API a session on a running machine must use: the socket (its shorter
// symlink when Podman made one) on macOS, the machine's ssh connection on Windows.
func (c matrixCell) wantEndpoint(in inspected) string {
	if c.goos == "windows" {
		if in.Rootful {
			return "ssh://root@127.0.0.1:61418/run/podman/podman.sock"
		}
		return "ssh://user@127.0.0.1:61418/run/user/1000/podman/podman.sock"
	}
	s := in.ConnectionInfo.PodmanSocket
	if s.Symlink != nil {
		return "unix://" + *s.Symlink
	}
	return "unix://" + s.Path
}

// providerCalls checks that every call naming the machine ran with its provider.
func providerCalls(t *testing.T, dir string, c matrixCell) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(calls(t, dir)), "\n") {
		env, args, _ := strings.Cut(line, "|")
		if strings.HasPrefix(args, "machine inspect") || strings.HasPrefix(args, "machine start") || strings.HasPrefix(args, "machine stop") {
			if env != "provider="+c.provider {
				t.Errorf("%q ran with %s, want provider=%s", args, env, c.provider)
			}
		}
	}
}

func TestMachineMatrixVersionProviderState(t *testing.T) {
	for _, c := range matrix() {
		t.Run(c.version+"/"+c.provider+"/"+c.state, func(t *testing.T) {
			in := c.inspected(t)
			share := "/Users/u/dev"
			if c.goos == "windows" {
				share = `C:\Users\u\dev`
			}
			setup := func(t *testing.T) (*Factory, string, fmt.Stringer, fmt.Stringer, string) {
				dir := installVersionedStub(t, c)
				f, out, errOut := testFactory(t)
				f.GOOS = c.goos
				f.Getenv = func(k string) string { return map[string]string{"HOME": "/Users/u"}[k] }
				f.ReadFile = func(p string) ([]byte, error) {
					if p == in.configFile() {
						return []byte(`{"Mounts": [{"Source": ` + jsonString(share) + `, "Target": "/mnt/dev"}]}`), nil
					}
					return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
				}
				return f, dir, out, errOut, machineProfile(t, c.goos, c.provider)
			}

			t.Run("status", func(t *testing.T) {
				f, dir, out, _, prof := setup(t)
				code := run(t, f, "--profile", prof, "am", "status", "-o", "json")
				var r struct {
					Machine struct {
						Name, Provider, State, Error string
						CPUs                         int `json:"cpus"`
					}
					Connection struct{ URI, Source, Error string }
				}
				if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
					t.Fatalf("exit %d, not JSON: %v\n%s", code, err, out)
				}
				wantState := map[string]string{"running": "running", "stopped": "stopped", "never-started": "stopped"}[c.state]
				if r.Machine.Provider != c.provider || r.Machine.State != wantState || r.Machine.Error != "" {
					t.Errorf("machine = %+v, want %s %s", r.Machine, c.provider, wantState)
				}
				if c.state == "running" {
					if want := c.wantEndpoint(in); r.Connection.URI != want {
						t.Errorf("the session's connection is %q (%s), want %q", r.Connection.URI, r.Connection.Error, want)
					}
				} else if !strings.Contains(r.Connection.Error, "Podman machine sourceos-agent ("+c.provider+", stopped)") {
					t.Errorf("connection error = %q", r.Connection.Error)
				}
				if code == 0 {
					t.Error("status exited 0 with no reachable API")
				}
				providerCalls(t, dir, c)
			})

			t.Run("doctor", func(t *testing.T) {
				f, dir, out, _, prof := setup(t)
				run(t, f, "--profile", prof, "am", "doctor", "-o", "json")
				var r struct {
					Checks []struct{ ID, Status, Finding, Fix string }
				}
				if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				found := false
				for _, ch := range r.Checks {
					if ch.ID != "machine" {
						continue
					}
					found = true
					if !strings.Contains(ch.Finding, "sourceos-agent ("+c.provider+")") || !strings.Contains(ch.Finding, "shares "+share) {
						t.Errorf("machine check: %+v", ch)
					}
					if strings.Contains(ch.Finding, " 0 cpus") || strings.Contains(ch.Finding, " 0 MiB") {
						t.Errorf("an unreported resource shown as zero: %s", ch.Finding)
					}
					// Podman 4 on WSL reports memory in use (running) or 0 (stopped), never a size.
					if strings.HasPrefix(c.version, "4.") && c.provider == "wsl" && !strings.Contains(ch.Finding, "memory unknown") {
						t.Errorf("Podman 4 WSL memory taken for a size: %s", ch.Finding)
					}
				}
				if !found {
					t.Errorf("no machine check: %s", out)
				}
				providerCalls(t, dir, c)
			})

			t.Run("start", func(t *testing.T) {
				f, dir, out, errOut, prof := setup(t)
				code := run(t, f, "--profile", prof, "am", "start")
				started := strings.Contains(calls(t, dir), "|machine start sourceos-agent --no-info -q")
				if c.state == "running" {
					if started || !strings.Contains(out.String(), "is already running") {
						t.Errorf("running machine: started=%v\n%s%s", started, out, errOut)
					}
				} else if !started || !strings.Contains(out.String(), "✓ Started Podman machine sourceos-agent ("+c.provider) {
					t.Errorf("exit %d, started=%v\nstdout:\n%s\nstderr:\n%s\ncalls:\n%s", code, started, out, errOut, calls(t, dir))
				}
				// Then the API is tried where a session would connect (nothing answers here).
				if want := c.wantEndpoint(in); !strings.Contains(errOut.String(), "cannot reach the Podman API at "+want) {
					t.Errorf("stderr does not try %s:\n%s", want, errOut)
				}
				providerCalls(t, dir, c)
			})

			t.Run("start --dry-run shows the command with its provider", func(t *testing.T) {
				f, dir, out, _, prof := setup(t)
				run(t, f, "--profile", prof, "am", "start", "--dry-run")
				want := "dry run: would run CONTAINERS_MACHINE_PROVIDER=" + c.provider + " podman machine start sourceos-agent --no-info -q"
				if c.goos == "windows" {
					want = `dry run: would run $env:CONTAINERS_MACHINE_PROVIDER="` + c.provider + `"; podman machine start sourceos-agent --no-info -q`
				}
				if c.state != "running" && !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
				if strings.Contains(calls(t, dir), "|machine start") {
					t.Error("--dry-run started the machine")
				}
				providerCalls(t, dir, c)
			})

			t.Run("stop", func(t *testing.T) {
				f, dir, out, _, prof := setup(t)
				code := run(t, f, "--profile", prof, "am", "stop", "--machine", "--force")
				stopped := strings.Contains(calls(t, dir), "|machine stop sourceos-agent")
				if code != 0 || stopped != (c.state == "running") {
					t.Errorf("exit %d, stop issued %v\n%s\ncalls:\n%s", code, stopped, out, calls(t, dir))
				}
				providerCalls(t, dir, c)
			})
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// A machine whose configuration file cannot be read shares "unknown" folders, not none: doctor
// warns and says how to look, for each version's way of naming the file.
func TestMachineDoctorSharesUnknown(t *testing.T) {
	for _, c := range []matrixCell{{"4.9.4", "windows", "wsl", "running"}, {"5.3.1", "darwin", "libkrun", "running"}, {"6.0.0", "windows", "hyperv", "stopped"}} {
		t.Run(c.version+"/"+c.provider, func(t *testing.T) {
			installVersionedStub(t, c)
			f, out, _ := testFactory(t)
			f.GOOS = c.goos
			f.ReadFile = func(p string) ([]byte, error) { return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrPermission} }
			run(t, f, "--profile", machineProfile(t, c.goos, c.provider), "am", "doctor", "-o", "json")
			var r struct {
				Checks []struct{ ID, Status, Finding, Fix string }
			}
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			file := c.inspected(t).configFile()
			for _, ch := range r.Checks {
				if ch.ID != "machine" {
					continue
				}
				if ch.Status != "warn" || !strings.Contains(ch.Finding, "its shared folders are unknown (cannot read the machine's configuration "+file+": permission denied)") ||
					!strings.Contains(ch.Fix, "CONTAINERS_MACHINE_PROVIDER") || !strings.Contains(ch.Fix, "podman machine ssh sourceos-agent findmnt") {
					t.Errorf("machine check: %+v", ch)
				}
				return
			}
			t.Errorf("no machine check: %s", out)
		})
	}
}

// BenchmarkMachineGet compares finding and inspecting the profile's machine, as every machine
// command does first (a fresh process: the client's listing is learnt anew), with the two raw
// podman commands a script that already knows the version and provider would run.
func BenchmarkMachineGet(b *testing.B) {
	for _, v := range []string{"5.3.1", "4.9.4", "6.0.0"} {
		b.Run(v, func(b *testing.B) {
			c := matrixCell{v, "darwin", "applehv", "running"}
			installVersionedStub(b, c)
			ours := func() error {
				m := podman.NewMachines(podman.ExecRunner{}, nil, "darwin")
				_, found, err := m.Get(b.Context(), "sourceos-agent", "applehv")
				if err == nil && !found {
					err = errors.New("machine not found")
				}
				return err
			}
			raw := func() error {
				r := podman.ExecRunner{}
				env := []string{"CONTAINERS_MACHINE_PROVIDER=applehv"}
				if _, err := r.RunEnv(b.Context(), env, "podman", "machine", "list", "--format", "json"); err != nil {
					return err
				}
				_, err := r.RunEnv(b.Context(), env, "podman", "machine", "inspect", "sourceos-agent")
				return err
			}
			benchtest.Pairs(b, ours, raw, "sourceosctl", "podman")
		})
	}
}
