package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/guard"
)

// Execer runs a command in a running container (internal/podman's Client).
type Execer interface {
	Exec(ctx context.Context, id string, x container.Exec, in io.Reader, out, errOut io.Writer) (int, error)
}

// Inside checks a running container of the pod from inside, with the session helper's own
// checks (guard.Check): the kernel's view of the container's first process — capabilities,
// no-new-privileges, seccomp, user and groups, environment, mounts and which are read-only,
// devices, hostname, umask, network interfaces, limits — read through `cat` and `ls` run in
// the container, since a pod from a cluster's manifest has no helper mounted.
func Inside(ctx context.Context, e Execer, id string, pod *corev1.Pod, c corev1.Container, img container.Image) []string {
	uid, gid := runAs(pod, c)
	exp := guard.NewExpectation(int(uid), int(gid), pod.Spec.Hostname, 0o022, img.Env)
	exp.Interfaces, exp.ReadOnly = []string{"lo"}, []string{"/"}
	for _, env := range c.Env {
		if env.ValueFrom != nil {
			exp.EnvNames = append(exp.EnvNames, env.Name)
		} else {
			exp.Env[env.Name] = env.Value
		}
	}
	for _, vm := range c.VolumeMounts {
		exp.Mounts = append(exp.Mounts, vm.MountPath)
		if vm.ReadOnly {
			exp.ReadOnly = append(exp.ReadOnly, vm.MountPath)
		}
	}
	r := reader{ctx: ctx, e: e, id: id}
	status := func() (string, error) { return r.read("cat", "/proc/1/status") }
	field := func(name string) string {
		s, _ := status()
		for _, line := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	sys := guard.System{
		Status:    status,
		MountInfo: func() (string, error) { return r.read("cat", "/proc/1/mountinfo") },
		IDs: func() (int, int, []int) {
			u, g := firstInt(field("Uid")), firstInt(field("Gid"))
			var groups []int
			for _, f := range strings.Fields(field("Groups")) {
				n, _ := strconv.Atoi(f)
				groups = append(groups, n)
			}
			return u, g, groups
		},
		Environ: func() []string {
			env, _ := r.read("cat", "/proc/1/environ")
			return strings.FieldsFunc(env, func(r rune) bool { return r == 0 })
		},
		Limits: func() (map[string][2]uint64, error) {
			s, err := r.read("cat", "/proc/1/limits")
			return procLimits(s), err
		},
		Hostname: func() (string, error) {
			h, err := r.read("cat", "/proc/sys/kernel/hostname")
			return strings.TrimSpace(h), err
		},
		Umask: func() int {
			n, err := strconv.ParseInt(field("Umask"), 8, 32)
			if err != nil {
				return -1
			}
			return int(n)
		},
		Interfaces: func() ([]string, error) {
			s, err := r.read("cat", "/proc/1/net/dev")
			return netDevices(s), err
		},
		Devices: func() ([]string, error) {
			s, err := r.read("ls", "-1A", "/dev")
			return strings.Fields(s), err
		},
		// ping_group_range, read: a group of the process within it may open ICMP sockets.
		ICMPSocket: func() error {
			s, _ := r.read("cat", "/proc/sys/net/ipv4/ping_group_range")
			f := strings.Fields(s)
			if len(f) == 2 {
				lo, _ := strconv.Atoi(f[0])
				hi, _ := strconv.Atoi(f[1])
				if lo <= int(gid) && int(gid) <= hi {
					return nil
				}
			}
			return errors.New("not allowed")
		},
	}
	return guard.Check(exp, sys)
}

type reader struct {
	ctx context.Context
	e   Execer
	id  string
}

func (r reader) read(argv ...string) (string, error) {
	var out, errOut bytes.Buffer
	// PATH is the read-only root's directories only: never a cat the first process left in a
	// writable directory.
	code, err := r.e.Exec(r.ctx, r.id, container.Exec{Command: argv, Env: map[string]string{"PATH": "/usr/bin:/bin"}}, nil, &out, &errOut)
	if err == nil && code != 0 {
		err = fmt.Errorf("%s exited %d: %s", strings.Join(argv, " "), code, strings.TrimSpace(errOut.String()))
	}
	return out.String(), err
}

func firstInt(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

// procLimits reads the real-time and nice limits of /proc/PID/limits.
func procLimits(s string) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, line := range strings.Split(s, "\n") {
		for prefix, name := range map[string]string{"Max realtime priority": "rtprio", "Max nice priority": "nice"} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				if f := strings.Fields(rest); len(f) >= 2 {
					out[name] = [2]uint64{limitValue(f[0]), limitValue(f[1])}
				}
			}
		}
	}
	return out
}

func limitValue(s string) uint64 {
	if s == "unlimited" {
		return ^uint64(0)
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// netDevices are the interface names of /proc/PID/net/dev.
func netDevices(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			out = append(out, strings.TrimSpace(name))
		}
	}
	return out
}
