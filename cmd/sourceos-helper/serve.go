//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// serveArg runs a server inside the container for as long as sourceosctl wants it — a
// workspace's browser IDE: `sourceos-helper serve 127.0.0.1:PORT -- COMMAND [ARG...]` starts
// COMMAND in a process group of its own (its output on standard error), prints
// "sourceos-helper: serving 127.0.0.1:PORT pgid PGID" on standard output once the port accepts
// connections, and stops the group (SIGTERM, then SIGKILL) when standard input ends —
// sourceosctl closing it, or going away. It refuses a port something already listens on: that
// would be another server answering in the command's place.
const serveArg = "serve"

// serveReadyLine begins the line serve prints once the server listens (agentmachine waits
// for it).
const serveReadyLine = "sourceos-helper: serving "

var (
	// serveStartLimit bounds waiting for the server to listen.
	serveStartLimit = 3 * time.Minute
	// serveStopGrace is how long the group gets between SIGTERM and SIGKILL.
	serveStopGrace = 5 * time.Second
)

func serve(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 3 || args[1] != "--" {
		fmt.Fprintln(stderr, "usage: sourceos-helper serve 127.0.0.1:PORT -- COMMAND [ARG...]")
		return 2
	}
	addr, argv := args[0], args[2:]
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(stderr, "sourceos-helper: serve %s: only a port on the container's loopback (127.0.0.1:PORT)\n", addr)
		return 2
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		fmt.Fprintf(stderr, "sourceos-helper: serve: something already listens on %s inside the container; it would answer in %s's place\n", addr, argv[0])
		return 1
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "sourceos-helper: serve: %v\n", err)
		return 127
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopGroup := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(serveStopGrace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(serveStartLimit)
	for listening := false; !listening; {
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "sourceos-helper: serve: %s exited before it listened on %s: %v\n", argv[0], addr, exitText(err))
			return exitCode(err)
		case <-eof:
			stopGroup()
			return 0
		case <-limit:
			fmt.Fprintf(stderr, "sourceos-helper: serve: %s did not listen on %s within %s\n", argv[0], addr, serveStartLimit)
			stopGroup()
			return 1
		case <-tick.C:
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				listening = true
			}
		}
	}
	// The group is what connect --served-by checks the port's listener against.
	fmt.Fprintf(stdout, "%s%s pgid %d\n", serveReadyLine, addr, cmd.Process.Pid)
	select {
	case err := <-exited:
		fmt.Fprintf(stderr, "sourceos-helper: serve: %s exited: %v\n", argv[0], exitText(err))
		return exitCode(err)
	case <-eof:
		stopGroup()
		return 0
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	return 1
}

// serveMain is serve on the process's own streams.
func serveMain(args []string) { os.Exit(serve(args, os.Stdin, os.Stdout, os.Stderr)) }
