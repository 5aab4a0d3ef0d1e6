//go:build linux

// Command sourceos-helper runs first in every governed container, mounted read-only by
// sourceosctl: `sourceos-helper check EXPECTATION [--forward 127.0.0.1:PORT=SOCKET]... -- TOOL
// [ARG...]` checks the container from inside against its plan (see internal/guard), starts a
// forwarder for each --forward (TCP on loopback to a mounted Unix socket: the way to the
// session's egress gateway from a container with no network), refuses AF_VSOCK sockets with a
// seccomp filter (a way to the hypervisor outside any network namespace), and then becomes the
// tool (exec); or it refuses with a line the session recognises and exit code 121. A
// workspace's tool is `sourceos-helper idle`, which keeps its container running until it is
// stopped; joins run `connect` (a relay to a port on the container's loopback) and `serve` (a
// server, such as the browser IDE, until sourceosctl lets go of it) after the check. It is small on purpose: it adds about a millisecond to a session.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sourceos/sourceosctl/internal/forward"
	"github.com/sourceos/sourceosctl/internal/guard"
)

const usage = "usage: sourceos-helper check EXPECTATION [--forward 127.0.0.1:PORT=SOCKET]... [--ca-bundle CA=BUNDLE]... -- COMMAND [ARG...]"

// exitForward is the exit code when a planned forwarder cannot start: the tool never runs
// without the egress path its plan gave it.
const exitForward = 122

// exitImpostor is connect's exit code when the port it should relay to is held by a process
// other than the served program.
const exitImpostor = 123

func main() {
	// One thread from the filter to the exec, besides the filter covering all of them.
	runtime.LockOSThread()
	if len(os.Args) >= 2 && os.Args[1] == forwarderArg {
		serveForwarders(os.Args[2:])
		return
	}
	if len(os.Args) == 2 && os.Args[1] == idleArg {
		idle()
		return
	}
	if len(os.Args) == 3 && os.Args[1] == connectArg {
		os.Exit(connect(os.Args[2], 0))
	}
	if len(os.Args) == 5 && os.Args[1] == connectArg && os.Args[3] == "--served-by" {
		pgid, err := strconv.Atoi(os.Args[4])
		if err != nil || pgid <= 1 {
			fmt.Fprintf(os.Stderr, "sourceos-helper: connect: --served-by %q is not a process group\n", os.Args[4])
			os.Exit(2)
		}
		os.Exit(connect(os.Args[2], pgid))
	}
	if len(os.Args) >= 2 && os.Args[1] == serveArg {
		serveMain(os.Args[2:])
	}
	if len(os.Args) == 2 && os.Args[1] == "__probe-vsock" {
		probeVsock()
		return
	}
	if len(os.Args) < 5 || os.Args[1] != "check" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	rest := os.Args[3:]
	var forwards []forward.Spec
	for len(rest) >= 2 && rest[0] == "--forward" {
		spec, err := forward.Parse(rest[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "sourceos-helper:", err)
			os.Exit(2)
		}
		forwards, rest = append(forwards, spec), rest[2:]
	}
	var bundles []string
	for len(rest) >= 2 && rest[0] == "--ca-bundle" {
		bundles, rest = append(bundles, rest[1]), rest[2:]
	}
	if len(rest) < 2 || rest[0] != "--" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	e, err := guard.Decode(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-helper:", err)
		os.Exit(2)
	}
	// Then the filter that refuses vsock: the tool (and the forwarders) run under it.
	diffs := guard.Check(e, system())
	if err := denyVsock(); err != nil {
		diffs = append(diffs, err.Error())
	}
	if len(diffs) > 0 {
		fmt.Fprintln(os.Stderr, guard.RefusalLine(e.Nonce, diffs))
		os.Exit(guard.ExitRefused)
	}
	fmt.Fprintln(os.Stderr, guard.PassLine(e.Nonce))
	for _, b := range bundles {
		if err := caBundle(b); err != nil {
			fmt.Fprintln(os.Stderr, "sourceos-helper: the session CA bundle:", err)
			os.Exit(exitForward)
		}
	}
	if err := startForwarders(forwards); err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-helper: egress forwarder:", err)
		os.Exit(exitForward)
	}
	argv := rest[1:]
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "sourceos-helper: %s: %v\n", argv[0], err)
		os.Exit(127)
	}
	err = syscall.Exec(bin, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "sourceos-helper: exec %s: %v\n", bin, err)
	os.Exit(126)
}

// idleArg keeps a workspace's container running once checked: the helper waits for the
// signal that stops the container and exits 0. Commands join it with podman exec.
const idleArg = "idle"

func idle() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	<-stop
}

// connectArg relays standard input and output to a TCP port on the container's loopback: a
// workspace's SSH port forwarding (ssh -L), run through the check like any join. Only
// loopback: the container has no other network, and its gateway is not a destination. With
// --served-by PGID (the browser IDE's relays) the port's listener must belong to that process
// group — the program serve started — or nothing is relayed.
const connectArg = "connect"

func connect(addr string, servedByGroup int) int {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "sourceos-helper: connect %s: only a port on the container's loopback (127.0.0.1:PORT)\n", addr)
		return 2
	}
	if servedByGroup > 0 {
		if err := servedBy("/proc", net.JoinHostPort(ip.String(), port), servedByGroup); err != nil {
			fmt.Fprintln(os.Stderr, "sourceos-helper: connect:", err)
			return exitImpostor
		}
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(ip.String(), port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-helper: connect:", err)
		return 1
	}
	// The client's end (standard input) half-closes the connection; the server's end ends
	// the relay.
	go func() {
		_, _ = io.Copy(conn, os.Stdin)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(os.Stdout, conn)
	return 0
}

// forwarderArg runs the helper as the forwarders' process: its listeners arrive as open
// files from 3 on, one per socket argument.
const forwarderArg = "__forward"

// startForwarders binds each listener here — so a tool that connects at once finds it
// listening — and hands them to a child process of this binary that serves them while the
// tool runs; the child lives as long as the container.
func startForwarders(specs []forward.Spec) error {
	if len(specs) == 0 {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	files := []*os.File{nil, nil, os.Stderr}
	args := []string{"sourceos-helper", forwarderArg}
	for _, s := range specs {
		l, err := net.Listen("tcp", s.Listen)
		if err != nil {
			return err
		}
		f, err := l.(*net.TCPListener).File()
		_ = l.Close()
		if err != nil {
			return err
		}
		defer f.Close()
		files, args = append(files, f), append(args, s.Socket)
	}
	p, err := os.StartProcess(self, args, &os.ProcAttr{Files: files})
	if err != nil {
		return err
	}
	return p.Release()
}

func serveForwarders(sockets []string) {
	done := make(chan error, len(sockets))
	for i, sock := range sockets {
		l, err := net.FileListener(os.NewFile(uintptr(3+i), "forward"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "sourceos-helper: egress forwarder:", err)
			os.Exit(exitForward)
		}
		go func() { done <- forward.Serve(l, sock) }()
	}
	err := <-done
	fmt.Fprintln(os.Stderr, "sourceos-helper: egress forwarder stopped:", err)
	os.Exit(exitForward)
}

// processes lists the container's processes (its PID namespace is its own); one that ended
// while being read is skipped.
func processes() ([]guard.Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []guard.Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		out = append(out, guard.ParseProcess(pid, string(b)))
	}
	return out, nil
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
		Cgroup:     func() guard.Cgroup { return guard.ReadCgroup(os.DirFS("/sys/fs/cgroup")) },
		Processes:  processes,
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

// systemBundles are where Linux distributions keep the trusted roots, the first found used.
var systemBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

// caBundle writes BUNDLE (new, read-only) as the image's trusted roots followed by the session
// CA's certificate CA, for the tools that read one file of roots (SSL_CERT_FILE and the like):
// hosts the gateway intercepts verify with the session CA, every other host as before.
func caBundle(arg string) error {
	ca, bundle, ok := strings.Cut(arg, "=")
	if !ok || ca == "" || bundle == "" {
		return fmt.Errorf("%q is not CA=BUNDLE", arg)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return err
	}
	var roots []byte
	for _, p := range systemBundles {
		if roots, err = os.ReadFile(p); err == nil {
			break
		}
	}
	out := append(append(roots, '\n'), caPEM...)
	f, err := os.OpenFile(bundle, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_, err = f.Write(out)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
