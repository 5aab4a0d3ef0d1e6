// Package guard checks, from inside a governed container and with the kernel's own view,
// that the container is what its plan asked for — before the tool runs. A Podman service can
// apply settings that its `inspect` does not show (a seccomp profile of "unconfined", default
// sysctls, a host IPC namespace, on Podman 4.3): the post-create comparison of the inspected
// container cannot see those, this check can. It imports only the standard library, because
// it is compiled into the small helper binary that runs first in every container.
package guard

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Expectation is what the container must be. It travels on the helper's command line, so it
// holds no secret values: secrets are known by their variable names only.
type Expectation struct {
	// Nonce tags the refusal line, so the session recognises the helper's verdict.
	Nonce string `json:"nonce"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	// Groups are the supplementary groups allowed (a subset is fine).
	Groups []int `json:"groups,omitempty"`
	// Env are variables that must have exactly these values when present; EnvNames are
	// variables allowed with any value (secrets, and what Podman adds itself).
	Env      map[string]string `json:"env"`
	EnvNames []string          `json:"envNames"`
	// Mounts are the planned mount points; the runtime's own are known (see standardMounts).
	Mounts []string `json:"mounts"`
	// Overlays are planned copy-on-write mounts: the mount point must be an overlay of
	// exactly that lower directory into that upper one (the session's copy, not the
	// repository itself).
	Overlays []Overlay `json:"overlays,omitempty"`
	Hostname string    `json:"hostname"`
	Umask    int       `json:"umask"`
	// Interfaces are the network interfaces allowed: ["lo"] for a session without network.
	Interfaces []string `json:"interfaces,omitempty"`
	// Cgroup are the resource limits the live cgroup must have (nil: not enforced, as a
	// profile with best-effort limits accepts).
	Cgroup *CgroupLimits `json:"cgroup,omitempty"`
	// ReadOnly are the mount points that must be mounted read-only ("/" for a read-only
	// root): a privileged process can remount them writable, which inspect never shows.
	ReadOnly []string `json:"readOnly,omitempty"`
}

// NewExpectation is where the expectation of any Podman container starts: its user with
// that group, the variables Podman sets itself (container, HOSTNAME, TERM) and the image's
// own — PATH with any value when the image sets none (Podman's default) —, its hostname and
// umask. The caller adds the mounts, limits and network it planned.
func NewExpectation(uid, gid int, hostname string, umask int, imageEnv []string) Expectation {
	e := Expectation{UID: uid, GID: gid, Groups: []int{gid}, Env: map[string]string{"container": "podman"},
		EnvNames: []string{"HOSTNAME", "TERM"}, Hostname: hostname, Umask: umask}
	hasPath := false
	for _, kv := range imageEnv {
		k, v, _ := strings.Cut(kv, "=")
		e.Env[k] = v
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		e.EnvNames = append(e.EnvNames, "PATH")
	}
	return e
}

// Overlay is one planned overlay mount, with host paths as the kernel reports them.
type Overlay struct {
	Target string `json:"target"`
	Lower  string `json:"lower"`
	Upper  string `json:"upper"`
}

// Encode is the expectation as one command-line argument.
func (e Expectation) Encode() string {
	raw, _ := json.Marshal(e)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// Decode reads an expectation written by Encode.
func Decode(s string) (Expectation, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Expectation{}, fmt.Errorf("expectation: %w", err)
	}
	var e Expectation
	if err := json.Unmarshal(raw, &e); err != nil {
		return Expectation{}, fmt.Errorf("expectation: %w", err)
	}
	return e, nil
}

// The helper's verdict is the first line it writes to standard error (the terminal when the
// session has one), before the tool exists: the tool runs as the same user and could forge a
// refusal line later, never before the verdict. ExitRefused is the helper's exit code when it
// refuses.
const (
	passedPrefix  = "sourceos-helper: checked "
	refusedPrefix = "sourceos-helper: refused "
	ExitRefused   = 121
)

// PassLine is the helper's verdict when the container is as planned.
func PassLine(nonce string) string { return passedPrefix + nonce }

// RefusalLine is the helper's verdict naming what differs.
func RefusalLine(nonce string, diffs []string) string {
	return refusedPrefix + nonce + ": " + strings.Join(diffs, "; ")
}

// ParseVerdict reads the first line of the helper's stream: whether it is the helper's
// verdict for nonce, and if it is a refusal, the differences it names.
func ParseVerdict(line, nonce string) (diffs []string, verdict bool) {
	line = strings.TrimRight(line, "\r\n")
	if line == PassLine(nonce) {
		return nil, true
	}
	rest, ok := strings.CutPrefix(line, refusedPrefix+nonce+": ")
	if !ok {
		return nil, false
	}
	return strings.Split(rest, "; "), true
}

// System is the container as the process sees it (the real one reads /proc, /sys, /dev).
type System struct {
	Status     func() (string, error) // /proc/self/status
	MountInfo  func() (string, error) // /proc/self/mountinfo
	IDs        func() (uid, gid int, groups []int)
	Environ    func() []string
	Limits     func() (map[string][2]uint64, error)
	Hostname   func() (string, error)
	Umask      func() int
	Interfaces func() ([]string, error) // names in /sys/class/net
	Devices    func() ([]string, error) // names in /dev
	// ICMPSocket opens (and closes) an unprivileged ICMP socket: nil means the kernel let
	// this user open one, which only a widened net.ipv4.ping_group_range allows.
	ICMPSocket func() error
	// Cgroup reads the container's cgroup limits (ReadCgroup of /sys/fs/cgroup).
	Cgroup func() Cgroup
	// Processes lists the container's processes (its own PID namespace's /proc).
	Processes func() ([]Process, error)
}

// Process is one process of the container as /proc/PID/status shows it.
type Process struct {
	PID    int
	Name   string
	UIDs   []int  // real, effective, saved, file system
	CapEff string // effective capabilities, hex
}

// Check compares the container with e and returns every difference, each naming the field.
func Check(e Expectation, s System) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	status, err := s.Status()
	if err != nil {
		add("cannot read /proc/self/status: %v", err)
	} else {
		fields := statusFields(status)
		if v := fields["Seccomp"]; v != "2" {
			add("seccomp mode is %s (want 2, a filter)", orUnknown(v))
		}
		if v := fields["NoNewPrivs"]; v != "1" {
			add("no-new-privileges is %s (want 1)", orUnknown(v))
		}
		for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if v := fields[c]; strings.Trim(v, "0") != "" || v == "" {
				add("capabilities %s are %s (want none)", c, orUnknown(v))
			}
		}
	}
	uid, gid, groups := s.IDs()
	if uid != e.UID || gid != e.GID {
		add("user is %d:%d (want %d:%d)", uid, gid, e.UID, e.GID)
	}
	for _, g := range groups {
		if !containsInt(e.Groups, g) && g != e.GID {
			add("supplementary group %d was not planned", g)
		}
	}
	d = append(d, checkEnv(e, s.Environ())...)
	if mi, err := s.MountInfo(); err != nil {
		add("cannot read /proc/self/mountinfo: %v", err)
	} else {
		d = append(d, checkMounts(e, mi)...)
		d = append(d, checkOverlays(e, mi)...)
	}
	if devs, err := s.Devices(); err != nil {
		add("cannot list /dev: %v", err)
	} else {
		for _, name := range devs {
			if !standardDevices[name] {
				add("device /dev/%s was not planned", name)
			}
		}
	}
	if limits, err := s.Limits(); err != nil {
		add("cannot read the resource limits: %v", err)
	} else {
		d = append(d, checkLimits(limits)...)
	}
	if s.Processes != nil {
		if procs, err := s.Processes(); err != nil {
			add("cannot list the container's processes: %v", err)
		} else {
			d = append(d, checkProcesses(e, procs)...)
		}
	}
	if e.Cgroup != nil && s.Cgroup != nil {
		d = append(d, checkCgroup(*e.Cgroup, s.Cgroup())...)
	}
	if h, err := s.Hostname(); err != nil || h != e.Hostname {
		add("hostname is %q (want %q): the UTS namespace is not the container's own", h, e.Hostname)
	}
	if u := s.Umask(); u != e.Umask {
		add("umask is %04o (want %04o)", u, e.Umask)
	}
	if e.Interfaces != nil {
		if ifs, err := s.Interfaces(); err != nil {
			add("cannot list the network interfaces: %v", err)
		} else {
			for _, name := range ifs {
				if !containsString(e.Interfaces, name) {
					add("network interface %s was not planned", name)
				}
			}
		}
	}
	// A server's default_sysctls is invisible to inspect. The namespaced settings of a private
	// namespace only touch the container itself, except ping_group_range, which grants
	// unprivileged ICMP sockets: tried, not read (a rootless reader sees the range's ends as
	// unmapped ids whatever they are).
	if s.ICMPSocket() == nil {
		add("unprivileged ICMP sockets are allowed (net.ipv4.ping_group_range was widened)")
	}
	return d
}

func statusFields(status string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// checkEnv names (never the values of) variables that were not planned, and planned ones
// whose value differs.
func checkEnv(e Expectation, environ []string) []string {
	var d []string
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		want, planned := e.Env[name]
		switch {
		case planned && value != want:
			d = append(d, fmt.Sprintf("environment variable %s has another value than planned", name))
		case !planned && !containsString(e.EnvNames, name):
			d = append(d, fmt.Sprintf("environment variable %s was not planned", name))
		}
	}
	return d
}

// standardMounts are the mount points the runtime itself makes in every container; masks and
// kernel file systems below /proc, /sys and /dev are the runtime's too.
var standardMounts = map[string]bool{
	"/": true, "/proc": true, "/sys": true, "/dev": true, "/etc/hostname": true, "/etc/hosts": true,
	"/etc/resolv.conf": true, "/run/.containerenv": true, "/run/podman-init": true,
	// Podman binds its own copies when it adds the session's user (keep-id, or a uid the image
	// does not list).
	"/etc/passwd": true, "/etc/group": true,
}

// kernelFS are the file systems a runtime mounts below /proc, /sys and /dev: anything else
// there (a bind of a host directory) was not the runtime's doing.
var kernelFS = map[string]bool{"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "shm": true, "securityfs": true}

// standardDevices are the device nodes a runtime gives every container.
var standardDevices = map[string]bool{"console": true, "core": true, "fd": true, "full": true, "mqueue": true, "null": true,
	"ptmx": true, "pts": true, "random": true, "shm": true, "stderr": true, "stdin": true, "stdout": true, "tty": true,
	"urandom": true, "zero": true}

// rootlessDevices are bound from the host by a rootless runtime, which cannot create nodes.
var rootlessDevices = map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/tty": true,
	"/dev/random": true, "/dev/urandom": true, "/dev/console": true}

func checkMounts(e Expectation, mountinfo string) []string {
	var d []string
	// Whether each mount point's visible (last) mount is read-only.
	readOnly := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(mountinfo), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 {
			continue
		}
		point := unescapeMount(fields[4])
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		fstype := ""
		if sep+1 < len(fields) {
			fstype = fields[sep+1]
		}
		readOnly[point] = containsString(strings.Split(fields[5], ","), "ro")
		switch {
		case standardMounts[point], containsString(e.Mounts, point):
		case (within(point, "/proc") || within(point, "/sys") || within(point, "/dev")) && kernelFS[fstype]:
		case rootlessDevices[point], (within(point, "/proc") || within(point, "/sys")) && fstype == "devtmpfs":
			// a rootless runtime binds the host's /dev/null over masked paths
		default:
			d = append(d, fmt.Sprintf("mount %s (%s) was not planned", point, fstype))
		}
	}
	for _, point := range e.ReadOnly {
		if ro, mounted := readOnly[point]; mounted && !ro {
			d = append(d, fmt.Sprintf("mount %s is writable (want read-only): remounted", point))
		}
	}
	return d
}

// checkProcesses refuses a process that is not the container's user or holds capabilities:
// every process a session or a join starts is, so another one was started around them (a
// privileged podman exec, say).
func checkProcesses(e Expectation, procs []Process) []string {
	var d []string
	for _, p := range procs {
		for _, id := range p.UIDs {
			if id != e.UID {
				d = append(d, fmt.Sprintf("process %d (%s) runs as uid %d (want %d): not started by sourceosctl", p.PID, p.Name, id, e.UID))
				break
			}
		}
		if strings.Trim(p.CapEff, "0") != "" {
			d = append(d, fmt.Sprintf("process %d (%s) has capabilities %s (want none): not started by sourceosctl", p.PID, p.Name, p.CapEff))
		}
	}
	return d
}

// ParseProcess reads a process from its /proc/PID/status.
func ParseProcess(pid int, status string) Process {
	f := statusFields(status)
	p := Process{PID: pid, Name: f["Name"], CapEff: f["CapEff"]}
	for _, v := range strings.Fields(f["Uid"]) {
		var id int
		if _, err := fmt.Sscan(v, &id); err == nil {
			p.UIDs = append(p.UIDs, id)
		}
	}
	return p
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, and so on).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// privilegedLimits grant what no session needs: scheduling at real-time or raised priority.
var privilegedLimits = []string{"rtprio", "nice"}

func checkLimits(got map[string][2]uint64) []string {
	var d []string
	for _, name := range privilegedLimits {
		if g := got[name]; g[0] != 0 || g[1] != 0 {
			d = append(d, fmt.Sprintf("limit %s is %d:%d (want 0:0)", name, g[0], g[1]))
		}
	}
	return d
}

func within(p, dir string) bool {
	p = path.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// checkOverlays finds each planned overlay's mount point and checks that it is an overlay of
// the planned lower directory into the planned upper one.
func checkOverlays(e Expectation, mountinfo string) []string {
	var d []string
	for _, o := range e.Overlays {
		found := false
		for _, line := range strings.Split(strings.TrimSpace(mountinfo), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 10 || unescapeMount(fields[4]) != o.Target {
				continue
			}
			found = true
			sep := 6
			for sep < len(fields) && fields[sep] != "-" {
				sep++
			}
			if sep+3 >= len(fields) || fields[sep+1] != "overlay" {
				d = append(d, fmt.Sprintf("%s is not the session's copy (an overlay): it is %s", o.Target, strings.Join(fields[sep+1:], " ")))
				continue
			}
			opts := map[string]string{}
			for _, kv := range strings.Split(fields[sep+3], ",") {
				k, v, _ := strings.Cut(kv, "=")
				opts[k] = unescapeMount(v)
			}
			if lowers := strings.Split(opts["lowerdir"], ":"); lowers[0] != o.Lower || opts["upperdir"] != o.Upper {
				d = append(d, fmt.Sprintf("%s is an overlay of %s into %s (want %s into %s)", o.Target, opts["lowerdir"], opts["upperdir"], o.Lower, o.Upper))
			}
		}
		if !found {
			d = append(d, fmt.Sprintf("%s is not mounted (want the session's copy)", o.Target))
		}
	}
	return d
}
