//go:build linux

package main

import (
	"encoding/binary"
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

// TestServedByWildcardListeners: a server bound to the wildcard (0.0.0.0, or [::] dual-stack,
// as dev servers often are) answers connections to 127.0.0.1 and is found; one of another
// group on the wildcard is refused even when the served group holds 127.0.0.1 itself.
func TestServedByWildcardListeners(t *testing.T) {
	mine := syscall.Getpgrp()
	// Go's "tcp" on ":" is a dual-stack [::] listener; "tcp6" would be IPv6 only (unreachable
	// from 127.0.0.1).
	for _, c := range []struct{ network, bind string }{{"tcp4", "0.0.0.0"}, {"tcp", ":"}} {
		l, err := net.Listen(c.network, strings.TrimSuffix(c.bind, ":")+":0")
		if err != nil {
			t.Logf("%s on %s: %v (no such listener on this kernel)", c.network, c.bind, err)
			continue
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		addr := "127.0.0.1:" + port
		if conn, err := net.Dial("tcp4", addr); err != nil {
			l.Close()
			t.Logf("%s on %s does not take IPv4 connections here: %v", c.network, c.bind, err)
			continue
		} else {
			conn.Close()
		}
		if err := servedBy("/proc", addr, mine); err != nil {
			t.Errorf("%s listener on %s: %v", c.network, l.Addr(), err)
		}
		if err := servedBy("/proc", addr, mine+1); err == nil || !strings.Contains(err.Error(), "another server took the port") {
			t.Errorf("%s listener on %s as another group's: %v", c.network, l.Addr(), err)
		}
		l.Close()
	}
	// /proc/net/tcp6 prints 32-bit words in host order: on this little-endian machine
	// ::ffff:127.0.0.1 is 0000000000000000FFFF00000100007F.
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		for ip, want := range map[string]string{"::ffff:127.0.0.1": "0000000000000000FFFF00000100007F:0050", "::": "00000000000000000000000000000000:0050"} {
			if got := procAddr(net.ParseIP(ip), 80); got != want {
				t.Errorf("procAddr(%s) = %q, want %q", ip, got, want)
			}
		}
		if got := procAddr(net.ParseIP("127.0.0.1").To4(), 80); got != "0100007F:0050" {
			t.Errorf("procAddr(127.0.0.1) = %q", got)
		}
	}
}
