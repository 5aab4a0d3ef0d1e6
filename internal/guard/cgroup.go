package guard

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// CgroupLimits are the resource limits the container's cgroup must have: what the server
// applies now, read from inside. Inspect shows what the container was created with; a server
// can change the live cgroup afterwards (podman update) without inspect showing it. Zero
// means no limit was planned (not checked).
type CgroupLimits struct {
	MemoryBytes int64   `json:"memoryBytes,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
}

// Cgroup is a cgroup's limits as read: -1 is no limit, 0 could not be read (the controller's
// file is not there).
type Cgroup struct {
	MemoryBytes int64
	Pids        int64
	CPUs        float64
}

// unlimited is the value at or above which a cgroup v1 memory limit means none.
const unlimited = int64(1) << 62

// ReadCgroup reads the limits of the cgroup the process sees at /sys/fs/cgroup (its own, in a
// private cgroup namespace or as the runtime mounts it on v1), with either hierarchy.
func ReadCgroup(fsys fs.FS) Cgroup {
	read := func(name string) string {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	var c Cgroup
	if _, err := fs.Stat(fsys, "cgroup.controllers"); err == nil { // v2
		c.MemoryBytes = parseLimit(read("memory.max"))
		c.Pids = parseLimit(read("pids.max"))
		if quota, period, ok := strings.Cut(read("cpu.max"), " "); ok {
			c.CPUs = cpus(parseLimit(quota), parseLimit(period))
		}
		return c
	}
	c.MemoryBytes = parseLimit(read("memory/memory.limit_in_bytes"))
	if c.MemoryBytes >= unlimited {
		c.MemoryBytes = -1
	}
	c.Pids = parseLimit(read("pids/pids.max"))
	c.CPUs = cpus(parseLimit(read("cpu/cpu.cfs_quota_us")), parseLimit(read("cpu/cpu.cfs_period_us")))
	return c
}

// parseLimit reads a cgroup value: "max" (and v1's -1) is -1, a number itself, anything else
// (absent, unreadable) 0.
func parseLimit(s string) int64 {
	if s == "max" {
		return -1
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	if n < 0 {
		return -1
	}
	return n
}

func cpus(quota, period int64) float64 {
	switch {
	case quota == -1:
		return -1
	case quota == 0 || period <= 0:
		return 0
	}
	return float64(quota) / float64(period)
}

// checkCgroup compares the live limits with the planned ones: a limit that is looser than
// planned, or absent, is a difference; one the kernel does not show is not checked.
func checkCgroup(want CgroupLimits, got Cgroup) []string {
	var d []string
	if want.MemoryBytes > 0 && got.MemoryBytes != 0 && got.MemoryBytes != want.MemoryBytes {
		d = append(d, fmt.Sprintf("memory limit is %s (want %d bytes), changed on the live cgroup", limitString(got.MemoryBytes), want.MemoryBytes))
	}
	if want.Pids > 0 && got.Pids != 0 && got.Pids != want.Pids {
		d = append(d, fmt.Sprintf("pids limit is %s (want %d), changed on the live cgroup", limitString(got.Pids), want.Pids))
	}
	if want.CPUs > 0 && got.CPUs != 0 && (got.CPUs < 0 || got.CPUs-want.CPUs > 0.01 || want.CPUs-got.CPUs > 0.01) {
		what := "none"
		if got.CPUs > 0 {
			what = strconv.FormatFloat(got.CPUs, 'f', 2, 64)
		}
		d = append(d, fmt.Sprintf("cpu limit is %s (want %.2f), changed on the live cgroup", what, want.CPUs))
	}
	return d
}

func limitString(n int64) string {
	if n < 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}
