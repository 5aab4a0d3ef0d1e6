//go:build linux

package main

import (
	"net"
	"strings"
	"syscall"
	"testing"
)

// TestServedBy: a port this process listens on is served by its own process group and by no
// other; a port nobody listens on is refused.
func TestServedBy(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	mine := syscall.Getpgrp()
	if err := servedBy("/proc", addr, mine); err != nil {
		t.Fatalf("our own listener: %v", err)
	}
	if err := servedBy("/proc", addr, mine+1); err == nil || !strings.Contains(err.Error(), "another server took the port") {
		t.Fatalf("another group's: %v", err)
	}
	free, _ := net.Listen("tcp4", "127.0.0.1:0")
	freeAddr := free.Addr().String()
	free.Close()
	if err := servedBy("/proc", freeAddr, mine); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("a free port: %v", err)
	}
}
