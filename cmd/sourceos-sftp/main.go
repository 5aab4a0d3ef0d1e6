//go:build linux

// Command sourceos-sftp is the SFTP server of a workspace's editor access: sourceosctl's SSH
// proxy runs it inside the workspace's container (through sourceos-helper's check) and relays
// an SSH client's sftp subsystem to its standard input and output. Files are opened by this
// process, inside the container, as the container's user: a symlink or socket planted in the
// workspace resolves in the container's view, never the host's. It is a program of its own so
// that the helper every container starts with stays small.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

func main() {
	if len(os.Args) > 2 || len(os.Args) == 2 && os.Args[1] != "--" {
		fmt.Fprintln(os.Stderr, "usage: sourceos-sftp (speaks SFTP on standard input and output)")
		os.Exit(2)
	}
	wd, _ := os.Getwd()
	srv, err := sftp.NewServer(stdio{}, sftp.WithServerWorkingDirectory(wd))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-sftp:", err)
		os.Exit(1)
	}
	if err := srv.Serve(); err != nil && err != io.EOF {
		fmt.Fprintln(os.Stderr, "sourceos-sftp:", err)
		os.Exit(1)
	}
}

type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error                { return os.Stdout.Close() }
