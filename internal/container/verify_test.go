package container

import (
	"strings"
	"testing"
)

func hardened() (Spec, Observed) {
	s := Spec{User: "1000:1000", UserNS: "keep-id", Network: "none", CapDrop: []string{"ALL"}, CapAdd: []string{},
		NoNewPrivileges: true, ReadOnlyRoot: true, Init: true,
		Mounts: []Mount{{Source: "/r", Target: "/workspace"}}, Tmpfs: []Tmpfs{{Target: "/tmp"}, {Target: "/home/agent"}},
		Limits: Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 100}}
	o := Observed{User: "1000:1000", UserNS: "private", Network: "none",
		CapDrop:         []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"},
		NoNewPrivileges: true, ReadOnlyRoot: true, Init: true,
		Binds: []Mount{{Source: "/r/", Target: "/workspace"}}, Tmpfs: []string{"/home/agent", "/tmp"},
		Limits: Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 100}}
	return s, o
}

func TestVerifyAcceptsWhatAPodman43ServerReports(t *testing.T) {
	s, o := hardened()
	if diffs := Verify(s, o); len(diffs) != 0 {
		t.Fatalf("a faithfully applied spec was rejected: %v", diffs)
	}
}

func TestVerifyCatchesEveryWeakening(t *testing.T) {
	tests := []struct {
		name   string
		weaken func(*Observed)
		want   string
	}{
		{"privileged", func(o *Observed) { o.Privileged = true }, "container is privileged"},
		{"capability added", func(o *Observed) { o.CapAdd = []string{"CAP_NET_ADMIN"} }, "capabilities added: CAP_NET_ADMIN"},
		{"capability kept", func(o *Observed) { o.CapDrop = o.CapDrop[1:3] }, "capabilities not dropped: FOWNER,FSETID,KILL"},
		{"effective caps after start", func(o *Observed) { o.EffectiveCaps = []string{"CAP_CHOWN"} }, "effective capabilities CAP_CHOWN"},
		{"writable root", func(o *Observed) { o.ReadOnlyRoot = false }, "read-only root is false"},
		{"new privileges", func(o *Observed) { o.NoNewPrivileges = false }, "no-new-privileges is false"},
		{"no init", func(o *Observed) { o.Init = false }, "init is false"},
		{"root user", func(o *Observed) { o.User = "0:0" }, `user is "0:0"`},
		{"host userns", func(o *Observed) { o.UserNS = "host" }, `user namespace is "host"`},
		{"network", func(o *Observed) { o.Network = "bridge" }, `network is "bridge"`},
		{"extra bind", func(o *Observed) { o.Binds = append(o.Binds, Mount{Source: "/etc", Target: "/e"}) }, "bind mounts are"},
		{"read-write instead of read-only", func(o *Observed) { o.Binds[0].ReadOnly = true }, "bind mounts are"},
		{"missing tmpfs", func(o *Observed) { o.Tmpfs = o.Tmpfs[:1] }, "tmpfs mounts are"},
		{"memory", func(o *Observed) { o.Limits.MemoryBytes = 0 }, "memory limit is 0"},
		{"pids", func(o *Observed) { o.Limits.Pids = 0 }, "pids limit is 0"},
		{"cpus", func(o *Observed) { o.Limits.CPUs = 4 }, "cpu limit is 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, o := hardened()
			tt.weaken(&o)
			diffs := Verify(s, o)
			if len(diffs) == 0 || !strings.Contains(strings.Join(diffs, "; "), tt.want) {
				t.Fatalf("diffs = %v, want one containing %q", diffs, tt.want)
			}
		})
	}
}

func TestVerifyBestEffortLimits(t *testing.T) {
	s, o := hardened()
	s.Limits.BestEffort = true
	o.Limits = Limits{}
	if diffs := Verify(s, o); len(diffs) != 0 {
		t.Fatalf("best-effort limits with none applied were rejected: %v", diffs)
	}
	o.Limits.Pids = 5 // partly applied limits are still a mismatch
	if diffs := Verify(s, o); len(diffs) == 0 {
		t.Fatal("wrong limits accepted under best-effort")
	}
}
