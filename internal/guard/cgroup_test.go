package guard

import (
	"strings"
	"testing"
	"testing/fstest"
)

// TestReadCgroup reads both hierarchies as a container sees them, "max" and v1's huge
// number as no limit, and a missing controller as unknown.
func TestReadCgroup(t *testing.T) {
	v2 := fstest.MapFS{
		"cgroup.controllers": {Data: []byte("cpu memory pids\n")},
		"memory.max":         {Data: []byte("268435456\n")},
		"pids.max":           {Data: []byte("max\n")},
		"cpu.max":            {Data: []byte("150000 100000\n")},
	}
	if got := ReadCgroup(v2); got != (Cgroup{MemoryBytes: 268435456, Pids: -1, CPUs: 1.5}) {
		t.Errorf("v2: %+v", got)
	}
	v1 := fstest.MapFS{
		"memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		"pids/pids.max":                {Data: []byte("64\n")},
		"cpu/cpu.cfs_quota_us":         {Data: []byte("-1\n")},
		"cpu/cpu.cfs_period_us":        {Data: []byte("100000\n")},
	}
	if got := ReadCgroup(v1); got != (Cgroup{MemoryBytes: -1, Pids: 64, CPUs: -1}) {
		t.Errorf("v1: %+v", got)
	}
	if got := ReadCgroup(fstest.MapFS{}); got != (Cgroup{}) {
		t.Errorf("nothing visible: %+v", got)
	}
}

// TestCheckCgroup: every limit changed on the live cgroup (raised, lowered, removed) is a
// difference naming it; an unplanned or unreadable one is not.
func TestCheckCgroup(t *testing.T) {
	want := CgroupLimits{MemoryBytes: 256 << 20, Pids: 64, CPUs: 1}
	if d := checkCgroup(want, Cgroup{MemoryBytes: 256 << 20, Pids: 64, CPUs: 1}); d != nil {
		t.Errorf("as planned: %v", d)
	}
	if d := checkCgroup(want, Cgroup{}); d != nil {
		t.Errorf("nothing readable: %v", d)
	}
	if d := checkCgroup(CgroupLimits{}, Cgroup{MemoryBytes: 1, Pids: 1, CPUs: 0.1}); d != nil {
		t.Errorf("nothing planned: %v", d)
	}
	for name, got := range map[string]Cgroup{
		"memory limit is 1073741824": {MemoryBytes: 1 << 30, Pids: 64, CPUs: 1},
		"memory limit is none":       {MemoryBytes: -1, Pids: 64, CPUs: 1},
		"pids limit is none":         {MemoryBytes: 256 << 20, Pids: -1, CPUs: 1},
		"pids limit is 4096":         {MemoryBytes: 256 << 20, Pids: 4096, CPUs: 1},
		"cpu limit is 4.00":          {MemoryBytes: 256 << 20, Pids: 64, CPUs: 4},
		"cpu limit is none":          {MemoryBytes: 256 << 20, Pids: 64, CPUs: -1},
	} {
		d := checkCgroup(want, got)
		if len(d) != 1 || !strings.HasPrefix(d[0], name) {
			t.Errorf("%s: %v", name, d)
		}
	}
}
