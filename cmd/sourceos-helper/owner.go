//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// listenersOf finds the processes holding the listening TCP sockets that a connection to
// addr (an IPv4 loopback address and port) can reach, from /proc (the container's own: its PID
// and network namespaces): those bound to the address itself or to the wildcard, in IPv4 and in
// IPv6 (a dual-stack [::] and ::ffff:127.0.0.1). It returns each holder's process group.
func listenersOf(procDir, addr string) (groups []int, sockets int, err error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host).To4()
	port, perr := strconv.Atoi(portText)
	if ip == nil || perr != nil {
		return nil, 0, fmt.Errorf("%s is not an IPv4 address and port", addr)
	}
	reach := map[string][]string{
		"tcp":  {procAddr(ip, port), procAddr(net.IPv4zero.To4(), port)},
		"tcp6": {procAddr(net.IPv6unspecified, port), procAddr(ip.To16(), port)},
	}
	inodes := map[string]bool{}
	for file, locals := range reach {
		f, err := os.Open(filepath.Join(procDir, "net", file))
		if errors.Is(err, fs.ErrNotExist) && file == "tcp6" {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 10 && slices.Contains(locals, fields[1]) && fields[3] == "0A" { // 0A: LISTEN
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, 0, err
		}
	}
	if len(inodes) == 0 {
		return nil, 0, nil
	}
	pids, _ := filepath.Glob(filepath.Join(procDir, "[0-9]*"))
	for _, dir := range pids {
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !inodes[target] {
				continue
			}
			stat, err := os.ReadFile(filepath.Join(dir, "stat"))
			if err != nil {
				continue
			}
			// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
			rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
			if f := strings.Fields(rest); len(f) >= 3 {
				if g, err := strconv.Atoi(f[2]); err == nil {
					groups = append(groups, g)
				}
			}
		}
	}
	return groups, len(inodes), nil
}

// procAddr is an address and port as /proc/net/tcp and tcp6 print them: the address in
// 32-bit words as the kernel holds them, each read as a native integer.
func procAddr(ip net.IP, port int) string {
	var b strings.Builder
	for i := 0; i+4 <= len(ip); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", port)
	return b.String()
}

// servedBy checks that whatever listens on addr is the program serve started (its process
// group): a port taken over by another process while it is served is refused.
func servedBy(procDir, addr string, pgid int) error {
	groups, sockets, err := listenersOf(procDir, addr)
	if err != nil {
		return err
	}
	if sockets == 0 {
		return fmt.Errorf("nothing listens on %s", addr)
	}
	if len(groups) == 0 {
		return fmt.Errorf("the listener on %s belongs to no process this helper can see", addr)
	}
	for _, g := range groups {
		if g != pgid {
			return fmt.Errorf("%s is held by a process outside the served program's group %d (process group %d): another server took the port", addr, pgid, g)
		}
	}
	return nil
}
