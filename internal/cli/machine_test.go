package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podman"
)

// stubPodman is a podman executable that replays recorded machine outputs. After
// `machine start` it serves the *.after.json files when they exist.
const stubPodman = `#!/bin/sh
echo "$*" >> "$STUB_DIR/calls.log"
pick() { if [ -f "$STUB_DIR/started" ] && [ -f "$STUB_DIR/$1.after.json" ]; then cat "$STUB_DIR/$1.after.json"; else cat "$STUB_DIR/$1.json"; fi; }
case "$*" in
  "machine list --all-providers --format json") pick list ;;
  "machine inspect "*) pick inspect ;;
  "machine start "*)
    if [ -n "$STUB_START_FAIL" ]; then echo "Error: $STUB_START_FAIL" >&2; exit 125; fi
    touch "$STUB_DIR/started" ;;
  "machine stop "*) ;;
  "system connection list --format json") cat "$STUB_DIR/connections.json" ;;
  "--version") echo "podman version 5.7.0" ;;
  *) echo "stub podman: unexpected arguments: $*" >&2; exit 2 ;;
esac
`

type machineFixture struct {
	list, inspect           string // fixture file names in internal/podman/testdata/machines
	listAfter, inspectAfter string
	extraList               string // another machine's list fixture, merged in
}

func installStub(t *testing.T, fx machineFixture) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the stub is a shell script")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "podman"), []byte(stubPodman), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("..", "podman", "testdata", "machines")
	copyFixture := func(name, as string) {
		if name == "" {
			return
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if as == "list.json" && fx.extraList != "" {
			b = mergeLists(t, b, filepath.Join(src, fx.extraList))
		}
		if err := os.WriteFile(filepath.Join(dir, as), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFixture(fx.list, "list.json")
	copyFixture(fx.inspect, "inspect.json")
	copyFixture(fx.listAfter, "list.after.json")
	copyFixture(fx.inspectAfter, "inspect.after.json")
	conns := `[{"Name":"sourceos-agent","URI":"ssh://user@127.0.0.1:53298/run/user/1000/podman/podman.sock","Identity":"C:\\Users\\jack\\.local\\share\\containers\\podman\\machine\\machine","IsMachine":true,"Default":true},` +
		`{"Name":"sourceos-agent-root","URI":"ssh://root@127.0.0.1:53298/run/podman/podman.sock","Identity":"C:\\Users\\jack\\.local\\share\\containers\\podman\\machine\\machine","IsMachine":true,"Default":false}]`
	if err := os.WriteFile(filepath.Join(dir, "connections.json"), []byte(conns), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("STUB_DIR", dir)
	return dir
}

func mergeLists(t *testing.T, a []byte, otherPath string) []byte {
	t.Helper()
	b, err := os.ReadFile(otherPath)
	if err != nil {
		t.Fatal(err)
	}
	var x, y []map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		t.Fatal("bad list fixture")
	}
	y[0]["Name"], y[0]["Default"] = "other-machine", false
	out, _ := json.Marshal(append(x, y...))
	return out
}

func calls(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "calls.log"))
	return string(b)
}

// machineProfile writes a profile for the provider's host OS with machine sourceos-agent.
func machineProfile(t *testing.T, goos, provider string) string {
	t.Helper()
	volume := "/Users/u/dev"
	if goos == "windows" {
		volume = `C:\Users\u\dev`
	}
	body := "apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: m}\nspec:\n  host: {os: " + goos + ", provider: " + provider + "}\n" +
		"  machine: {name: sourceos-agent, cpus: 4, memoryMiB: 8192, diskGiB: 60, volumes: ['" + volume + "']}\n  image: {ref: localhost/x:1}\n"
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMachineStartAcrossProviders(t *testing.T) {
	tests := []struct {
		name     string
		goos     string
		provider string
		fixture  machineFixture
		env      map[string]string
		args     []string
		code     int
		stdout   []string // each must appear in stdout
		stderr   []string
		started  bool // whether `podman machine start` must have been issued
	}{
		{name: "applehv absent: exact init command, exit 4", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-empty.json"}, code: ExitMissing,
			stderr: []string{"Podman machine sourceos-agent: does not exist; sourceosctl never creates one unasked",
				"hint: CONTAINERS_MACHINE_PROVIDER=applehv podman machine init sourceos-agent --cpus 4 --memory 8192 --disk-size 60 --volume /Users/u/dev:/Users/u/dev"}},
		{name: "libkrun absent: provider selected by environment", goos: "darwin", provider: "libkrun",
			fixture: machineFixture{list: "list-empty.json"}, code: ExitMissing,
			stderr: []string{"hint: CONTAINERS_MACHINE_PROVIDER=libkrun podman machine init sourceos-agent --cpus 4 --memory 8192 --disk-size 60 --volume /Users/u/dev:/Users/u/dev"}},
		{name: "wsl absent: no --volume (WSL mounts drives itself)", goos: "windows", provider: "wsl",
			fixture: machineFixture{list: "list-empty.json"}, code: ExitMissing,
			stderr: []string{`hint: $env:CONTAINERS_MACHINE_PROVIDER="wsl"; podman machine init sourceos-agent --cpus 4 --memory 8192 --disk-size 60` + "\n"}},
		{name: "hyperv absent: PowerShell provider selection", goos: "windows", provider: "hyperv",
			fixture: machineFixture{list: "list-empty.json"}, code: ExitMissing,
			stderr: []string{`hint: $env:CONTAINERS_MACHINE_PROVIDER="hyperv"; podman machine init sourceos-agent --cpus 4 --memory 8192 --disk-size 60 --volume 'C:\Users\u\dev:C:\Users\u\dev'`}},
		{name: "applehv stopped, dry run: prints the start command", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-applehv-stopped.json", inspect: "inspect-applehv-stopped.json"}, args: []string{"--dry-run"},
			stdout: []string{"dry run: would run CONTAINERS_MACHINE_PROVIDER=applehv podman machine start sourceos-agent --no-info -q"}},
		{name: "applehv stopped: start issued, then the socket is tried", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-applehv-stopped.json", inspect: "inspect-applehv-stopped.json", listAfter: "list-applehv-running.json", inspectAfter: "inspect-applehv-running.json"},
			code:    ExitMissing, started: true,
			stdout: []string{"✓ Started Podman machine sourceos-agent"},
			stderr: []string{"cannot reach the Podman API at unix:///var/folders/9r/n3056v597wv2cq8s2j80bdnw0000gn/T/podman/sourceos-agent-api.sock (machine sourceos-agent)",
				"hint: sourceosctl agent-machine start"}},
		{name: "libkrun running: nothing started", goos: "darwin", provider: "libkrun",
			fixture: machineFixture{list: "list-libkrun-running.json", inspect: "inspect-libkrun-running.json"}, code: ExitMissing,
			stdout: []string{"✓ Podman machine sourceos-agent (libkrun, 4 cpus, 8192 MiB) is already running"}},
		{name: "qemu starting on Linux: wait", goos: "linux", provider: "qemu",
			fixture: machineFixture{list: "list-qemu-starting.json", inspect: "inspect-qemu-starting.json"},
			stdout:  []string{"Podman machine sourceos-agent (qemu, 2 cpus, 4096 MiB) is starting"}},
		{name: "wsl running: the ssh machine connection is used", goos: "windows", provider: "wsl",
			fixture: machineFixture{list: "list-wsl-running.json", inspect: "inspect-wsl-running.json"}, code: ExitMissing,
			stdout: []string{"is already running"},
			stderr: []string{"ssh://user@127.0.0.1:53298/run/user/1000/podman/podman.sock (machine sourceos-agent (connection sourceos-agent))"}},
		{name: "hyperv stopped and rootful, dry run", goos: "windows", provider: "hyperv",
			fixture: machineFixture{list: "list-hyperv-stopped.json", inspect: "inspect-hyperv-stopped.json"}, args: []string{"--dry-run"},
			stdout: []string{`would run $env:CONTAINERS_MACHINE_PROVIDER="hyperv"; podman machine start sourceos-agent --no-info -q`}},
		{name: "failed start: the error is podman's", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-applehv-stopped.json", inspect: "inspect-applehv-stopped.json"},
			env:     map[string]string{"STUB_START_FAIL": "vfkit exited unexpectedly"}, code: ExitFailure, started: true,
			stderr: []string{"start Podman machine sourceos-agent: podman machine start sourceos-agent --no-info -q: exit status 125: Error: vfkit exited unexpectedly"}},
		{name: "another machine running: named, refused", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-applehv-stopped.json", inspect: "inspect-applehv-stopped.json", extraList: "list-libkrun-running.json"},
			code:    ExitFailure,
			stderr: []string{"Podman machine other-machine is running, and applehv machines run one at a time; sourceos-agent was not started",
				"hint: CONTAINERS_MACHINE_PROVIDER=libkrun podman machine stop other-machine   # or: sourceosctl agent-machine start --force"}},
		{name: "another machine running, --force --dry-run: would stop it first", goos: "darwin", provider: "applehv",
			fixture: machineFixture{list: "list-applehv-stopped.json", inspect: "inspect-applehv-stopped.json", extraList: "list-libkrun-running.json"},
			args:    []string{"--force", "--dry-run"},
			stdout:  []string{"dry run: would run CONTAINERS_MACHINE_PROVIDER=libkrun podman machine stop other-machine", "dry run: would run CONTAINERS_MACHINE_PROVIDER=applehv podman machine start sourceos-agent --no-info -q"}},
		{name: "WSL machines may run side by side", goos: "windows", provider: "wsl",
			fixture: machineFixture{list: "list-wsl-running.json", inspect: "inspect-wsl-running.json", extraList: "list-wsl-running.json"}, code: ExitMissing,
			stdout: []string{"is already running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := installStub(t, tt.fixture)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			f, out, errOut := testFactory(t)
			f.GOOS = tt.goos
			f.Getenv = func(k string) string { return os.Getenv(k) }
			args := append([]string{"--profile", machineProfile(t, tt.goos, tt.provider), "am", "start"}, tt.args...)
			code := run(t, f, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if got := strings.Contains(calls(t, dir), "machine start sourceos-agent --no-info -q"); got != tt.started {
				t.Errorf("machine start issued: %v, want %v; calls:\n%s", got, tt.started, calls(t, dir))
			}
			if strings.Contains(calls(t, dir), "machine stop") && !strings.Contains(strings.Join(tt.args, " "), "--force") {
				t.Errorf("a machine was stopped without --force; calls:\n%s", calls(t, dir))
			}
		})
	}
}

func TestMachineUnitsFromListAndInspect(t *testing.T) {
	installStub(t, machineFixture{list: "list-docs-qemu.json", inspect: "inspect-docs-applehv-running.json"})
	f, _, _ := testFactory(t)
	list, err := f.Machines().List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The docs' list: Memory "2147483648" bytes, DiskSize "10737418240" bytes.
	if len(list) != 1 || list[0].MemoryMiB != 2048 || list[0].DiskGiB != 10 || list[0].State != "stopped" || list[0].Provider != "qemu" {
		t.Errorf("list = %+v", list)
	}
	m, found, err := f.Machines().Get(t.Context(), "podman-machine-default", "")
	if err != nil || !found {
		t.Fatalf("get: %v %v", found, err)
	}
	// The docs' inspect: Memory 6144 MiB, DiskSize 100 GiB, running, no symlink.
	if m.MemoryMiB != 6144 || m.DiskGiB != 100 || m.CPUs != 6 || m.State != "running" ||
		m.Socket != "/var/folders/9r/n3056v597wv2cq8s2j80bdnw0000gn/T/podman/podman-machine-default-api.sock" {
		t.Errorf("machine = %+v", m)
	}
}

func TestMachineStopOnlyWhatThisToolStarted(t *testing.T) {
	dir := installStub(t, machineFixture{list: "list-libkrun-running.json", inspect: "inspect-libkrun-running.json"})
	prof := machineProfile(t, "darwin", "libkrun")
	f, _, errOut := testFactory(t)
	f.GOOS = "darwin"
	if code := run(t, f, "--profile", prof, "am", "stop", "--machine"); code != ExitUsage || !strings.Contains(errOut.String(), "was not started by sourceosctl, so it is left running") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(calls(t, dir), "machine stop") {
		t.Fatal("stopped a machine this tool did not start")
	}
	f, out, _ := testFactory(t)
	f.GOOS = "darwin"
	if code := run(t, f, "--profile", prof, "am", "stop", "--machine", "--force"); code != 0 || !strings.Contains(out.String(), "Stopped Podman machine sourceos-agent") {
		t.Fatalf("--force: exit %d: %s", code, out)
	}
	if !strings.Contains(calls(t, dir), "machine stop sourceos-agent") {
		t.Error("--force did not stop the machine")
	}
}

func TestMachineSharesComeFromItsConfigFile(t *testing.T) {
	installStub(t, machineFixture{list: "list-libkrun-running.json", inspect: "inspect-libkrun-running.json"})
	var asked string
	m := podman.Machines{Runner: podman.ExecRunner{}, ReadFile: func(p string) ([]byte, error) {
		asked = p
		return []byte(`{"Mounts": [{"Source": "/Users", "Target": "/Users"}, {"Source": "/private", "Target": "/private"}]}`), nil
	}}
	got, found, err := m.Get(t.Context(), "sourceos-agent", "libkrun")
	if err != nil || !found {
		t.Fatalf("get: %v %v", found, err)
	}
	if want := "/Users/jacksparrow/.config/containers/podman/machine/libkrun/sourceos-agent.json"; asked != want {
		t.Errorf("read %s, want the config file inspect names (%s)", asked, want)
	}
	if strings.Join(got.Mounts, ",") != "/Users,/private" {
		t.Errorf("mounts = %v", got.Mounts)
	}
}
