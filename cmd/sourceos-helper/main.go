//go:build linux

// Command sourceos-helper runs first in every governed container, mounted read-only by
// sourceosctl: `sourceos-helper check EXPECTATION -- TOOL [ARG...]` checks the container from
// inside against its plan (see internal/guard) and then becomes the tool (exec), or refuses
// with a line the session recognises and exit code 121. It is small on purpose: it adds about
// a millisecond to a session.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sourceos/sourceosctl/internal/guard"
)

func main() {
	if len(os.Args) < 5 || os.Args[1] != "check" || os.Args[3] != "--" {
		fmt.Fprintln(os.Stderr, "usage: sourceos-helper check EXPECTATION -- COMMAND [ARG...]")
		os.Exit(2)
	}
	e, err := guard.Decode(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-helper:", err)
		os.Exit(2)
	}
	if diffs := guard.Check(e, system()); len(diffs) > 0 {
		fmt.Fprintln(os.Stderr, guard.RefusalLine(e.Nonce, diffs))
		os.Exit(guard.ExitRefused)
	}
	fmt.Fprintln(os.Stderr, guard.PassLine(e.Nonce))
	argv := os.Args[4:]
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "sourceos-helper: %s: %v\n", argv[0], err)
		os.Exit(127)
	}
	err = syscall.Exec(bin, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "sourceos-helper: exec %s: %v\n", bin, err)
	os.Exit(126)
}

func system() guard.System {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return string(b), err
	}
	names := func(dir string) ([]string, error) {
		entries, err := os.ReadDir(dir)
		out := make([]string, 0, len(entries))
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out, err
	}
	return guard.System{
		Status:    func() (string, error) { return read("/proc/self/status") },
		MountInfo: func() (string, error) { return read("/proc/self/mountinfo") },
		IDs: func() (int, int, []int) {
			groups, _ := os.Getgroups()
			return os.Getuid(), os.Getgid(), groups
		},
		Environ: os.Environ,
		Limits: func() (map[string][2]uint64, error) {
			out := map[string][2]uint64{}
			for name, res := range map[string]int{"rtprio": unix.RLIMIT_RTPRIO, "nice": unix.RLIMIT_NICE} {
				var l unix.Rlimit
				if err := unix.Getrlimit(res, &l); err != nil {
					return nil, err
				}
				out[name] = [2]uint64{l.Cur, l.Max}
			}
			return out, nil
		},
		Hostname: os.Hostname,
		Umask: func() int {
			old := unix.Umask(0o022)
			unix.Umask(old)
			return old
		},
		Interfaces: func() ([]string, error) { return names("/sys/class/net") },
		Devices:    func() ([]string, error) { return names("/dev") },
		ICMPSocket: func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
			if err == nil {
				unix.Close(fd)
			}
			return err
		},
	}
}
