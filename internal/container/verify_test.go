package container

import (
	"strings"
	"testing"
)

func hardened() (Spec, Observed) {
	s := Spec{User: "1000:1000", UserNS: "keep-id", Network: "none", CapDrop: []string{"ALL"}, CapAdd: []string{},
		NoNewPrivileges: true, ReadOnlyRoot: true, Init: true,
		Mounts: []Mount{{Source: "/r", Target: "/workspace"}}, Tmpfs: []Tmpfs{{Target: "/tmp"}, {Target: "/home/agent"}},
		Limits: Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 100},
		Env:    map[string]string{"HOME": "/home/agent"}, Secrets: []Secret{{Name: "k", EnvVar: "ANTHROPIC_API_KEY"}},
		Hostname: "sourceos-agent", SeccompProfile: DefaultSeccompProfile, Namespaces: []string{"ipc", "uts", "pid"},
		ShmSizeBytes: 64 << 20, Umask: "0022"}
	o := Observed{User: "1000:1000", UserNS: "private", Network: "none",
		CapDrop:         []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"},
		NoNewPrivileges: true, ReadOnlyRoot: true, Init: true,
		Binds: []Mount{{Source: "/r/", Target: "/workspace"}}, Tmpfs: []string{"/home/agent", "/tmp"},
		Limits:     Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 100},
		Namespaces: map[string]string{"ipc": "shareable", "uts": "private", "pid": "private", "cgroup": "host"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "TERM=xterm", "container=podman", "HOME=/home/agent",
			"HOSTNAME=sourceos-agent", "ANTHROPIC_API_KEY=sk-secret"},
		Ulimits:     []Ulimit{{Name: "RLIMIT_NOFILE", Soft: 1048576, Hard: 1048576}, {Name: "RLIMIT_NPROC", Soft: 4096, Hard: 4096}},
		ShmSize:     64 << 20,
		Umask:       "0022",
		Hostname:    "sourceos-agent",
		SecurityOpt: []string{"no-new-privileges", "seccomp=" + DefaultSeccompProfile},
		Annotations: map[string]string{"io.container.manager": "libpod", "io.podman.annotations.init": "TRUE", "org.opencontainers.image.stopSignal": "15"},
		Cgroups:     "default"}
	return s, o
}

// image is what the hardened container's image declares.
var image = Image{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}}

func TestVerifyAcceptsWhatAPodman43ServerReports(t *testing.T) {
	s, o := hardened()
	if diffs := Verify(s, image, o); len(diffs) != 0 {
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
		{"extra volume", func(o *Observed) { o.Volumes = append(o.Volumes, Volume{Name: "cache", Target: "/c"}) }, "volumes are [cache->/c:rw] (want [])"},
		{"read-write instead of read-only", func(o *Observed) { o.Binds[0].ReadOnly = true }, "bind mounts are"},
		{"missing tmpfs", func(o *Observed) { o.Tmpfs = o.Tmpfs[:1] }, "tmpfs mounts are"},
		{"memory", func(o *Observed) { o.Limits.MemoryBytes = 0 }, "memory limit is 0"},
		{"pids", func(o *Observed) { o.Limits.Pids = 0 }, "pids limit is 0"},
		{"cpus", func(o *Observed) { o.Limits.CPUs = 4 }, "cpu limit is 4"},
		{"volume", func(o *Observed) { o.OtherMounts = []string{"/data vol1 (volume)"} }, "mount /data vol1 (volume) was not planned"},
		{"host ipc", func(o *Observed) { o.Namespaces["ipc"] = "host" }, `ipc namespace is "host"`},
		{"host uts", func(o *Observed) { o.Namespaces["uts"] = "host" }, `uts namespace is "host"`},
		{"host pid", func(o *Observed) { o.Namespaces["pid"] = "host" }, `pid namespace is "host"`},
		{"device", func(o *Observed) { o.Devices = []string{"/dev/fuse:/dev/fuse"} }, "device /dev/fuse:/dev/fuse was not planned"},
		{"extra variable", func(o *Observed) { o.Env = append(o.Env, "LD_PRELOAD=/x.so") }, "environment variable LD_PRELOAD was not planned"},
		{"planned variable changed", func(o *Observed) { o.Env[4] = "HOME=/root" }, "environment variable HOME has another value than planned"},
		{"image variable changed", func(o *Observed) { o.Env[1] = "LANG=x" }, "environment variable LANG has another value than the image's"},
		{"container variable changed", func(o *Observed) { o.Env[3] = "container=docker" }, "environment variable container has another value"},
		{"real-time priority", func(o *Observed) { o.Ulimits = append(o.Ulimits, Ulimit{Name: "RLIMIT_RTPRIO", Soft: 99, Hard: 99}) }, "ulimit RLIMIT_RTPRIO=99:99 was not planned"},
		{"shm", func(o *Observed) { o.ShmSize = 2 << 30 }, "/dev/shm is 2147483648 bytes"},
		{"umask", func(o *Observed) { o.Umask = "0000" }, "umask is 0000 (want 0022)"},
		{"oom", func(o *Observed) { o.OOMScoreAdj = -1000 }, "OOM score adjustment is -1000 (want 0)"},
		{"hostname", func(o *Observed) { o.Hostname = "build-host" }, `hostname is "build-host"`},
		{"groups", func(o *Observed) { o.GroupAdd = []string{"keep-groups"} }, "supplementary groups keep-groups were not planned"},
		{"unconfined seccomp", func(o *Observed) { o.SecurityOpt = []string{"no-new-privileges", "seccomp=unconfined"} }, "security option seccomp=unconfined was not planned"},
		{"apparmor", func(o *Observed) { o.AppArmor = "unconfined" }, "AppArmor profile is unconfined"},
		{"cgroups disabled", func(o *Observed) { o.Cgroups = "disabled" }, `cgroups are "disabled"`},
		{"runtime annotation", func(o *Observed) { o.Annotations["run.oci.keep_original_groups"] = "1" }, "annotation run.oci.keep_original_groups was not planned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, o := hardened()
			tt.weaken(&o)
			diffs := Verify(s, image, o)
			if len(diffs) == 0 || !strings.Contains(strings.Join(diffs, "; "), tt.want) {
				t.Fatalf("diffs = %v, want one containing %q", diffs, tt.want)
			}
		})
	}
}

// TestVerifyComparesVolumes: a planned named volume must be there as planned — its name,
// target and mode; a writable one where a read-only one was planned is a weakening.
func TestVerifyComparesVolumes(t *testing.T) {
	s, o := hardened()
	s.Volumes = []Volume{{Name: "sosctl-x-egress", Target: "/run/sourceos-egress", ReadOnly: true}}
	o.Volumes = []Volume{{Name: "sosctl-x-egress", Target: "/run/sourceos-egress/", ReadOnly: true}}
	if diffs := Verify(s, image, o); len(diffs) != 0 {
		t.Fatalf("the planned volume was rejected: %v", diffs)
	}
	o.Volumes[0].ReadOnly = false
	if diffs := strings.Join(Verify(s, image, o), "; "); !strings.Contains(diffs, "volumes are [sosctl-x-egress->/run/sourceos-egress:rw] (want [sosctl-x-egress->/run/sourceos-egress:ro])") {
		t.Errorf("a writable volume was accepted: %s", diffs)
	}
	o.Volumes = nil
	if diffs := Verify(s, image, o); len(diffs) != 1 {
		t.Errorf("a missing volume: %v", diffs)
	}
}

func TestVerifyBestEffortLimits(t *testing.T) {
	s, o := hardened()
	s.Limits.BestEffort = true
	o.Limits = Limits{}
	if diffs := Verify(s, image, o); len(diffs) != 0 {
		t.Fatalf("best-effort limits with none applied were rejected: %v", diffs)
	}
	o.Limits.Pids = 5 // partly applied limits are still a mismatch
	if diffs := Verify(s, image, o); len(diffs) == 0 {
		t.Fatal("wrong limits accepted under best-effort")
	}
}

func TestVerifyNeverPrintsAVariablesValue(t *testing.T) {
	s, o := hardened()
	o.Env[6] = "ANTHROPIC_API_KEY=sk-secret" // a secret: allowed by name
	o.Env = append(o.Env, "TOKEN=hunter2")
	o.Env[4] = "HOME=hunter3"
	got := strings.Join(Verify(s, image, o), "; ")
	if strings.Contains(got, "hunter") || strings.Contains(got, "sk-secret") {
		t.Fatalf("a difference printed a value: %s", got)
	}
	if !strings.Contains(got, "TOKEN was not planned") || !strings.Contains(got, "HOME has another value") {
		t.Fatalf("differences = %s", got)
	}
}

func TestAppliedIsAcceptedForEverySpec(t *testing.T) {
	s, _ := hardened()
	if diffs := Verify(s, Image{}, Applied(s)); len(diffs) != 0 {
		t.Fatalf("Applied(spec) was rejected: %v", diffs)
	}
}
