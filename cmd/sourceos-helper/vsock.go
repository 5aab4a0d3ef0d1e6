//go:build linux

package main

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp data a classic BPF filter reads: the syscall number at offset 0, the audit
// architecture at 4, the arguments from 16 (the low 32 bits of the first on little-endian
// machines, which every architecture below is).
const (
	offNR   = 0
	offArch = 4
	offArg0 = 16
)

// socketCalls are, per audit architecture a container of this machine can run, the syscall
// numbers that create a socket with its family as the first argument, and the ones that
// multiplex socket calls through a pointer (i386 socketcall), which a filter cannot inspect.
var socketCalls = map[uint32]struct{ direct, opaque []uint32 }{
	unix.AUDIT_ARCH_X86_64:  {direct: []uint32{41, 41 | 0x40000000}}, // socket, and x32's
	unix.AUDIT_ARCH_I386:    {direct: []uint32{359}, opaque: []uint32{102}},
	unix.AUDIT_ARCH_AARCH64: {direct: []uint32{198}},
	unix.AUDIT_ARCH_ARM:     {direct: []uint32{281}},
}

// vsockFilter is a seccomp program that refuses AF_VSOCK sockets (EAFNOSUPPORT) — a channel
// to the hypervisor that network namespaces do not separate and the egress gateway never sees
// — and i386's socketcall (ENOSYS; 32-bit C libraries then use the direct calls, which it
// inspects); everything else it allows, leaving the runtime's own profile in force.
func vsockFilter() []unix.SockFilter {
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	allow := unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW}
	refuse := func(errno unix.Errno) unix.SockFilter {
		return unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(errno)}
	}
	// One block per architecture: [ld arch; jeq arch (else skip the block); ld nr; per
	// direct: jeq nr → check the family; per opaque: jeq nr → ENOSYS; allow; ld arg0;
	// jeq AF_VSOCK → EAFNOSUPPORT; allow].
	var prog []unix.SockFilter
	for _, arch := range []uint32{unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_AARCH64, unix.AUDIT_ARCH_ARM} {
		calls := socketCalls[arch]
		var block []unix.SockFilter
		block = append(block, unix.SockFilter{Code: ld, K: offNR})
		n := len(calls.direct) + len(calls.opaque)
		// After the comparisons: [allow][ld arg0][jeq vsock][allow][refuse EAFNOSUPPORT], then
		// one ENOSYS per opaque call.
		for i, nr := range calls.direct { // to "ld arg0", past the other comparisons and the allow
			block = append(block, unix.SockFilter{Code: jeq, K: nr, Jt: uint8(n - i)})
		}
		for _, nr := range calls.opaque { // to its own ENOSYS, past the five family instructions
			block = append(block, unix.SockFilter{Code: jeq, K: nr, Jt: uint8(len(calls.opaque) + 4)})
		}
		block = append(block, allow,
			unix.SockFilter{Code: ld, K: offArg0},
			unix.SockFilter{Code: jeq, K: unix.AF_VSOCK, Jf: 1},
			refuse(unix.EAFNOSUPPORT),
			allow)
		for range calls.opaque {
			block = append(block, refuse(unix.ENOSYS))
		}
		prog = append(prog, unix.SockFilter{Code: ld, K: offArch}, unix.SockFilter{Code: jeq, K: arch, Jf: uint8(len(block))})
		prog = append(prog, block...)
	}
	return append(prog, allow)
}

// denyVsock installs vsockFilter on every thread of this process — a Go program's exec can
// happen on any of them, and a filter set with prctl covers only the calling one (found when a
// session's tool, exec'd from another thread, could still open vsock) — and proves it: an
// AF_VSOCK socket must then fail. No-new-privileges, which every session sets, is what lets an
// unprivileged process install a filter.
func denyVsock() error {
	prog := vsockFilter()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("vsock: cannot install the seccomp filter that refuses it: %v", errno)
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
		return errors.New("vsock: an AF_VSOCK socket can still be created after the filter")
	}
	if !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("vsock: creating a socket failed with %v, not the filter's refusal", err)
	}
	return nil
}

// probeVsock prints what creating an AF_VSOCK socket gives (for the tests).
func probeVsock() {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
		fmt.Println("vsock: created")
		return
	}
	fmt.Println("vsock:", err)
}
