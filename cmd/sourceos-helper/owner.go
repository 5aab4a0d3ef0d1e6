//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listenersOf finds the processes holding the listening TCP sockets on addr (an IPv4 address
// and port), from /proc (the container's own: its PID and network namespaces). It returns
// each holder's process group.
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
	// /proc/net/tcp prints the address as the kernel holds it, read as a native integer.
	local := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip), port)
	f, err := os.Open(filepath.Join(procDir, "net", "tcp"))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 10 && fields[1] == local && fields[3] == "0A" { // 0A: LISTEN
			inodes["socket:["+fields[9]+"]"] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
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
