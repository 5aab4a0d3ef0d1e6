package container

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Observed is what the server reports for a created container, reduced to the fields that
// carry the session's security properties.
type Observed struct {
	CapAdd          []string `json:"capAdd"`
	CapDrop         []string `json:"capDrop"`
	EffectiveCaps   []string `json:"effectiveCaps,omitempty"` // absent before start on 4.x
	ReadOnlyRoot    bool     `json:"readOnlyRoot"`
	NoNewPrivileges bool     `json:"noNewPrivileges"`
	User            string   `json:"user"`
	UserNS          string   `json:"userns"`
	Network         string   `json:"network"`
	Binds           []Mount  `json:"binds"`
	Tmpfs           []string `json:"tmpfs"`
	Limits          Limits   `json:"limits"`
	Privileged      bool     `json:"privileged"`
	Init            bool     `json:"init"`
}

// Applied is what a server that applied every setting of spec reports for the container:
// the observation Verify accepts without a difference.
func Applied(spec Spec) Observed {
	o := Observed{Init: spec.Init, CapDrop: spec.CapDrop, CapAdd: spec.CapAdd, ReadOnlyRoot: spec.ReadOnlyRoot,
		NoNewPrivileges: spec.NoNewPrivileges, User: spec.User, UserNS: spec.UserNS, Network: spec.Network,
		Binds: spec.Mounts, Limits: spec.Limits}
	for _, t := range spec.Tmpfs {
		o.Tmpfs = append(o.Tmpfs, t.Target)
	}
	return o
}

// defaultCaps are the capabilities every Podman release since 4.0 grants by default; a
// container with all capabilities dropped must show each of them dropped (servers list
// them one by one rather than as ALL).
var defaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// Verify compares what the server created with the spec and returns every difference. An
// empty result means the server applied every security property; anything else means the
// server silently weakened the spec and the container must not start.
func Verify(want Spec, got Observed) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if got.Privileged {
		add("container is privileged")
	}
	if len(got.CapAdd) > len(want.CapAdd) {
		add("capabilities added: %s (want %s)", strings.Join(got.CapAdd, ","), listOrNone(want.CapAdd))
	}
	if len(got.EffectiveCaps) > 0 && contains(want.CapDrop, "ALL") && len(want.CapAdd) == 0 {
		add("effective capabilities %s (want none)", strings.Join(got.EffectiveCaps, ","))
	}
	if contains(want.CapDrop, "ALL") {
		dropped := map[string]bool{}
		for _, c := range got.CapDrop {
			dropped[strings.TrimPrefix(strings.ToUpper(c), "CAP_")] = true
		}
		if !dropped["ALL"] {
			var kept []string
			for _, c := range defaultCaps {
				if !dropped[c] {
					kept = append(kept, c)
				}
			}
			if len(kept) > 0 {
				add("capabilities not dropped: %s", strings.Join(kept, ","))
			}
		}
	}
	if got.Init != want.Init {
		add("init is %v (want %v)", got.Init, want.Init)
	}
	if got.ReadOnlyRoot != want.ReadOnlyRoot {
		add("read-only root is %v (want %v)", got.ReadOnlyRoot, want.ReadOnlyRoot)
	}
	if got.NoNewPrivileges != want.NoNewPrivileges {
		add("no-new-privileges is %v (want %v)", got.NoNewPrivileges, want.NoNewPrivileges)
	}
	if got.User != want.User {
		add("user is %q (want %q)", got.User, want.User)
	}
	// 4.x reports keep-id as "private"; the user check above proves the uid, so only a
	// different explicit mode (host, auto, nomap) is a weakening.
	if want.UserNS != "" && got.UserNS != "" && got.UserNS != "private" && !strings.HasPrefix(got.UserNS, want.UserNS) {
		add("user namespace is %q (want %q)", got.UserNS, want.UserNS)
	}
	if got.Network != want.Network {
		add("network is %q (want %q)", got.Network, want.Network)
	}
	if w, g := mountSet(want.Mounts), mountSet(got.Binds); w != g {
		add("bind mounts are [%s] (want [%s])", g, w)
	}
	var wantTmpfs []string
	for _, t := range want.Tmpfs {
		wantTmpfs = append(wantTmpfs, t.Target)
	}
	if w, g := sortedJoin(wantTmpfs), sortedJoin(got.Tmpfs); w != g {
		add("tmpfs mounts are [%s] (want [%s])", g, w)
	}
	if want.Limits.BestEffort && got.Limits == (Limits{}) {
		return diffs // the server applies no limits at all, as the profile accepted
	}
	if got.Limits.MemoryBytes != want.Limits.MemoryBytes {
		add("memory limit is %d bytes (want %d)", got.Limits.MemoryBytes, want.Limits.MemoryBytes)
	}
	if got.Limits.Pids != want.Limits.Pids {
		add("pids limit is %d (want %d)", got.Limits.Pids, want.Limits.Pids)
	}
	if diff := got.Limits.CPUs - want.Limits.CPUs; diff > 0.001 || diff < -0.001 {
		add("cpu limit is %g (want %g)", got.Limits.CPUs, want.Limits.CPUs)
	}
	return diffs
}

func mountSet(ms []Mount) string {
	var parts []string
	for _, m := range ms {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		parts = append(parts, path.Clean(m.Source)+":"+path.Clean(m.Target)+":"+mode)
	}
	return sortedJoin(parts)
}

func sortedJoin(s []string) string {
	c := append([]string{}, s...)
	sort.Strings(c)
	return strings.Join(c, " ")
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
