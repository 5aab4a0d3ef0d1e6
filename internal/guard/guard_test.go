package guard

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// A hardened session's container as the helper saw it (recorded from real Podman 4.3
// containers, rootful and rootless keep-id: testdata/mountinfo-*.txt).
const cleanStatus = "Name:\tsourceos-helper\nUid:\t1000\t1000\t1000\t1000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n" +
	"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n"

func expected() Expectation {
	return Expectation{Nonce: "n0", UID: 1000, GID: 1000, Groups: []int{1000},
		Env:      map[string]string{"container": "podman", "HOME": "/home/agent", "PATH": "/usr/bin:/bin"},
		EnvNames: []string{"HOSTNAME", "TERM", "ANTHROPIC_API_KEY"},
		Mounts:   []string{"/workspace", "/run/sourceos-helper", "/tmp", "/home/agent"},
		Hostname: "sourceos-agent", Umask: 0o022, Interfaces: []string{"lo"}, ReadOnly: []string{"/", "/run/sourceos-helper"},
		Cgroup: &CgroupLimits{MemoryBytes: 256 << 20, Pids: 64, CPUs: 1}}
}

func cleanSystem(t *testing.T, mountinfo string) System {
	t.Helper()
	mi, err := os.ReadFile("testdata/" + mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	return System{
		Status:    func() (string, error) { return cleanStatus, nil },
		MountInfo: func() (string, error) { return string(mi), nil },
		IDs:       func() (int, int, []int) { return 1000, 1000, []int{1000} },
		Environ: func() []string {
			return []string{"container=podman", "HOME=/home/agent", "PATH=/usr/bin:/bin", "HOSTNAME=sourceos-agent", "TERM=xterm", "ANTHROPIC_API_KEY=sk-1"}
		},
		Limits: func() (map[string][2]uint64, error) {
			return map[string][2]uint64{"nofile": {1024, 4096}, "nproc": {4096, 4096}, "rtprio": {0, 0}, "nice": {0, 0}}, nil
		},
		Hostname:   func() (string, error) { return "sourceos-agent", nil },
		Umask:      func() int { return 0o022 },
		Interfaces: func() ([]string, error) { return []string{"lo"}, nil },
		Devices: func() ([]string, error) {
			return []string{"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}, nil
		},
		ICMPSocket: func() error { return errors.New("permission denied") },
		Cgroup:     func() Cgroup { return Cgroup{MemoryBytes: 256 << 20, Pids: 64, CPUs: 1} },
		Processes: func() ([]Process, error) {
			return []Process{ParseProcess(1, "Name:\tcatatonit\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n"),
				ParseProcess(7, cleanStatus)}, nil
		},
	}
}

func TestCheckAcceptsRealHardenedContainers(t *testing.T) {
	for _, mi := range []string{"mountinfo-rootful.txt", "mountinfo-rootless.txt"} {
		if d := Check(expected(), cleanSystem(t, mi)); len(d) != 0 {
			t.Errorf("%s: a container as planned was refused: %v", mi, d)
		}
	}
}

func TestCheckRefusesEveryWeakening(t *testing.T) {
	status := func(field, value string) func(*System) {
		return func(s *System) {
			s.Status = func() (string, error) {
				lines := strings.Split(cleanStatus, "\n")
				for i, l := range lines {
					if strings.HasPrefix(l, field+":") {
						lines[i] = field + ":\t" + value
					}
				}
				return strings.Join(lines, "\n"), nil
			}
		}
	}
	addMount := func(line string) func(*System) {
		return func(s *System) {
			mi, _ := s.MountInfo()
			s.MountInfo = func() (string, error) { return mi + line + "\n", nil }
		}
	}
	tests := []struct {
		name   string
		weaken func(*System)
		want   string
	}{
		{"seccomp unconfined", status("Seccomp", "0"), "seccomp mode is 0"},
		{"new privileges", status("NoNewPrivs", "0"), "no-new-privileges is 0"},
		{"effective capability", status("CapEff", "0000000000200000"), "capabilities CapEff are 0000000000200000"},
		{"bounding set kept", status("CapBnd", "00000000a80425fb"), "capabilities CapBnd"},
		{"ambient capability", status("CapAmb", "0000000000000400"), "capabilities CapAmb"},
		{"status unreadable", func(s *System) { s.Status = func() (string, error) { return "", errors.New("denied") } }, "cannot read /proc/self/status"},
		{"root user", func(s *System) { s.IDs = func() (int, int, []int) { return 0, 0, nil } }, "user is 0:0 (want 1000:1000)"},
		{"kept groups", func(s *System) { s.IDs = func() (int, int, []int) { return 1000, 1000, []int{1000, 27} } }, "supplementary group 27 was not planned"},
		{"host variable", func(s *System) {
			s.Environ = func() []string { return []string{"container=podman", "SSH_AUTH_SOCK=/run/x"} }
		}, "environment variable SSH_AUTH_SOCK was not planned"},
		{"changed variable", func(s *System) { s.Environ = func() []string { return []string{"HOME=/root"} } }, "environment variable HOME has another value than planned"},
		{"volume from containers.conf", addMount("200 93 254:0 /etc /hostetc ro,relatime - ext4 /dev/vda rw"), "mount /hostetc (ext4) was not planned"},
		{"host directory over /proc", addMount("201 94 254:0 /etc /proc/driver ro,relatime - ext4 /dev/vda rw"), "mount /proc/driver (ext4) was not planned"},
		{"escaped mount point", addMount(`202 93 254:0 /x /a\040b rw - ext4 /dev/vda rw`), "mount /a b (ext4) was not planned"},
		{"timezone", addMount("203 93 254:0 /usr/share/zoneinfo/UTC /etc/localtime ro - ext4 /dev/vda rw"), "mount /etc/localtime"},
		{"device", func(s *System) {
			s.Devices = func() ([]string, error) { return []string{"null", "fuse", "kvm"}, nil }
		}, "device /dev/fuse was not planned; device /dev/kvm was not planned"},
		{"real-time priority", func(s *System) {
			s.Limits = func() (map[string][2]uint64, error) { return map[string][2]uint64{"rtprio": {99, 99}}, nil }
		}, "limit rtprio is 99:99 (want 0:0)"},
		{"nice", func(s *System) {
			s.Limits = func() (map[string][2]uint64, error) { return map[string][2]uint64{"nice": {0, 40}}, nil }
		}, "limit nice is 0:40"},
		{"host uts", func(s *System) { s.Hostname = func() (string, error) { return "buildhost", nil } }, `hostname is "buildhost"`},
		{"umask", func(s *System) { s.Umask = func() int { return 0 } }, "umask is 0000 (want 0022)"},
		{"network", func(s *System) { s.Interfaces = func() ([]string, error) { return []string{"lo", "eth0"}, nil } }, "network interface eth0 was not planned"},
		{"icmp sockets", func(s *System) { s.ICMPSocket = func() error { return nil } }, "unprivileged ICMP sockets are allowed"},
		{"root remounted writable", func(s *System) {
			mi, _ := s.MountInfo()
			first, rest, _ := strings.Cut(mi, "\n")
			s.MountInfo = func() (string, error) { return strings.Replace(first, " / ro,", " / rw,", 1) + "\n" + rest, nil }
		}, "mount / is writable (want read-only)"},
		{"helper remounted writable", addMount("204 97 254:0 /helper /run/sourceos-helper rw,relatime - ext4 /dev/vda rw"), "mount /run/sourceos-helper is writable"},
		{"a root process beside", func(s *System) {
			s.Processes = func() ([]Process, error) {
				return []Process{ParseProcess(1, cleanStatus), ParseProcess(40, "Name:\tsleep\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n")}, nil
			}
		}, "process 40 (sleep) runs as uid 0 (want 1000): not started by sourceosctl; process 40 (sleep) has capabilities 000001ffffffffff"},
		{"a setuid process beside", func(s *System) {
			s.Processes = func() ([]Process, error) {
				return []Process{ParseProcess(41, "Name:\tsh\nUid:\t1000\t0\t0\t0\nCapEff:\t0000000000000000\n")}, nil
			}
		}, "process 41 (sh) runs as uid 0"},
		{"processes unreadable", func(s *System) { s.Processes = func() ([]Process, error) { return nil, errors.New("denied") } }, "cannot list the container's processes"},
		{"memory raised live", func(s *System) { s.Cgroup = func() Cgroup { return Cgroup{MemoryBytes: 8 << 30, Pids: 64, CPUs: 1} } }, "memory limit is 8589934592"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cleanSystem(t, "mountinfo-rootless.txt")
			tt.weaken(&s)
			d := strings.Join(Check(expected(), s), "; ")
			if !strings.Contains(d, tt.want) {
				t.Fatalf("differences = %q, want one containing %q", d, tt.want)
			}
		})
	}
}

func TestCheckNeverPrintsAVariablesValue(t *testing.T) {
	s := cleanSystem(t, "mountinfo-rootful.txt")
	s.Environ = func() []string { return []string{"HOME=hunter2", "LEAK=hunter3"} }
	if d := strings.Join(Check(expected(), s), "; "); strings.Contains(d, "hunter") {
		t.Fatalf("a value was printed: %s", d)
	}
}

func TestExpectationAndRefusalRoundTrip(t *testing.T) {
	e := expected()
	got, err := Decode(e.Encode())
	if err != nil || got.Hostname != e.Hostname || got.Env["HOME"] != "/home/agent" || len(got.Mounts) != len(e.Mounts) {
		t.Fatalf("Decode(Encode(e)) = %+v, %v", got, err)
	}
	if _, err := Decode("not base64!"); err == nil {
		t.Fatal("a corrupt expectation was decoded")
	}
	line := RefusalLine("n0", []string{"a was not planned", "b is 1"})
	if d, ok := ParseVerdict(line+"\r\n", "n0"); !ok || len(d) != 2 || d[1] != "b is 1" {
		t.Fatalf("ParseVerdict(refusal) = %v, %v", d, ok)
	}
	if d, ok := ParseVerdict(PassLine("n0")+"\n", "n0"); !ok || d != nil {
		t.Fatalf("ParseVerdict(pass) = %v, %v", d, ok)
	}
	for _, line := range []string{RefusalLine("guess", []string{"x"}), PassLine("guess"), "hello", ""} {
		if _, ok := ParseVerdict(line, "n0"); ok {
			t.Fatalf("%q was taken for the verdict of another nonce", line)
		}
	}
}

// FuzzExpectation feeds the helper arbitrary expectations (it decodes one from its command
// line) and arbitrary first lines to the verdict parser: neither may panic, and a decoded
// expectation round-trips.
func FuzzExpectation(f *testing.F) {
	f.Add(expected().Encode(), PassLine("n0"))
	f.Add("e30", RefusalLine("n0", []string{"a", "b"}))
	f.Add("!!", "sourceos-helper: refused n0: ")
	f.Fuzz(func(t *testing.T, encoded, line string) {
		if e, err := Decode(encoded); err == nil {
			again, err := Decode(e.Encode())
			if err != nil || again.Nonce != e.Nonce || again.Hostname != e.Hostname || len(again.Mounts) != len(e.Mounts) {
				t.Fatalf("round trip of %+v: %+v, %v", e, again, err)
			}
		}
		if diffs, ok := ParseVerdict(line, "n0"); ok && !strings.HasPrefix(strings.TrimRight(line, "\r\n"), "sourceos-helper: ") {
			t.Fatalf("%q taken for a verdict (%v)", line, diffs)
		}
	})
}

// The session's copy as a real Podman 4.3 overlay volume mounted it (recorded rootful).
const overlayLine = "79 74 0:44 / /workspace rw,relatime - overlay /var/lib/containers/storage/overlay-containers/b5ba/userdata/overlay/1380747183/merge " +
	"rw,lowerdir=/home/dev/repo,upperdir=/root/.local/state/sourceos/agent-machine/copies/s1/upper,workdir=/root/.local/state/sourceos/agent-machine/copies/s1/work,uuid=on"

// TestCheckOverlays: the workspace must be the planned overlay — of the user's repository,
// into the session's upper layer — not a bind mount of the repository itself (a weakened
// server, or a plan ignored), nor another upper layer, nor absent.
func TestCheckOverlays(t *testing.T) {
	want := Overlay{Target: "/workspace", Lower: "/home/dev/repo", Upper: "/root/.local/state/sourceos/agent-machine/copies/s1/upper"}
	e := Expectation{Overlays: []Overlay{want}}
	if d := checkOverlays(e, overlayLine); len(d) != 0 {
		t.Fatalf("the planned overlay was refused: %v", d)
	}
	for name, tc := range map[string]struct{ mountinfo, refusal string }{
		"a bind of the repository": {"100 97 254:0 /home/dev/repo /workspace rw,relatime - ext4 /dev/vda rw", "/workspace is not the session's copy (an overlay): it is ext4"},
		"another upper layer":      {strings.Replace(overlayLine, "copies/s1/upper", "copies/s2/upper", 1), "/workspace is an overlay of /home/dev/repo into"},
		"another repository":       {strings.Replace(overlayLine, "lowerdir=/home/dev/repo", "lowerdir=/home/dev/other", 1), "(want /home/dev/repo into"},
		"not mounted":              {"", "/workspace is not mounted"},
	} {
		t.Run(name, func(t *testing.T) {
			if d := strings.Join(checkOverlays(e, tc.mountinfo), "; "); !strings.Contains(d, tc.refusal) {
				t.Errorf("refusal %q, want one containing %q", d, tc.refusal)
			}
		})
	}
}

// TestNewExpectationTakesTheImagesEnvironment: the image's variables must have its values;
// PATH may have any value only when the image sets none (Podman then sets its default).
func TestNewExpectationTakesTheImagesEnvironment(t *testing.T) {
	e := NewExpectation(1000, 1000, "h", 0o022, []string{"PATH=/usr/bin", "LANG=C.UTF-8"})
	if e.Env["PATH"] != "/usr/bin" || e.Env["LANG"] != "C.UTF-8" || e.Env["container"] != "podman" {
		t.Errorf("env %v", e.Env)
	}
	if slices.Contains(e.EnvNames, "PATH") {
		t.Errorf("PATH allowed with any value although the image sets it: %v", e.EnvNames)
	}
	if e := NewExpectation(1, 2, "h", 0o077, nil); !slices.Contains(e.EnvNames, "PATH") || e.UID != 1 || e.GID != 2 || !slices.Equal(e.Groups, []int{2}) || e.Umask != 0o077 {
		t.Errorf("without the image's PATH: %+v", e)
	}
}
