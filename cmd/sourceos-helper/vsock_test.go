//go:build linux

package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the filter's three instructions (load word, jump if equal, return) over one
// system call, as the kernel would.
func run(t *testing.T, prog []unix.SockFilter, arch, nr, arg0 uint32) uint32 {
	t.Helper()
	data := map[uint32]uint32{offNR: nr, offArch: arch, offArg0: arg0}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = data[in.K]
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// TestVsockFilter: on every architecture a container here can run, socket(AF_VSOCK) is
// refused and every other socket allowed; i386's opaque socketcall is refused; other calls
// and unknown architectures pass to the runtime's own profile.
func TestVsockFilter(t *testing.T) {
	prog := vsockFilter()
	const (
		allow   = unix.SECCOMP_RET_ALLOW
		noVsock = unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)
		noSys   = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	for _, tc := range []struct {
		name           string
		arch, nr, arg0 uint32
		want           uint32
	}{
		{"x86_64 socket(AF_VSOCK)", unix.AUDIT_ARCH_X86_64, 41, unix.AF_VSOCK, noVsock},
		{"x86_64 socket(AF_INET)", unix.AUDIT_ARCH_X86_64, 41, unix.AF_INET, allow},
		{"x86_64 socket(AF_UNIX)", unix.AUDIT_ARCH_X86_64, 41, unix.AF_UNIX, allow},
		{"x32 socket(AF_VSOCK)", unix.AUDIT_ARCH_X86_64, 41 | 0x40000000, unix.AF_VSOCK, noVsock},
		{"x86_64 read, first argument 40", unix.AUDIT_ARCH_X86_64, 0, 40, allow},
		{"i386 socket(AF_VSOCK)", unix.AUDIT_ARCH_I386, 359, unix.AF_VSOCK, noVsock},
		{"i386 socket(AF_INET)", unix.AUDIT_ARCH_I386, 359, unix.AF_INET, allow},
		{"i386 socketcall", unix.AUDIT_ARCH_I386, 102, 1, noSys},
		{"i386 write, number 41 there", unix.AUDIT_ARCH_I386, 41, unix.AF_VSOCK, allow},
		{"aarch64 socket(AF_VSOCK)", unix.AUDIT_ARCH_AARCH64, 198, unix.AF_VSOCK, noVsock},
		{"aarch64 socket(AF_INET6)", unix.AUDIT_ARCH_AARCH64, 198, unix.AF_INET6, allow},
		{"arm socket(AF_VSOCK)", unix.AUDIT_ARCH_ARM, 281, unix.AF_VSOCK, noVsock},
		{"another architecture", 0x12345678, 41, unix.AF_VSOCK, allow},
	} {
		if got := run(t, prog, tc.arch, tc.nr, tc.arg0); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
