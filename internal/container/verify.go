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

	// Overlays are overlay volumes, when the server lists them (Podman 4.3 does not).
	Overlays []Overlay `json:"overlays,omitempty"`
	// Volumes are named volumes (Chown is not reported; it is not compared).
	Volumes []Volume `json:"volumes,omitempty"`
	// Other mounts: volumes, images, anything that is neither a planned bind nor a tmpfs.
	OtherMounts []string          `json:"otherMounts,omitempty"`
	Namespaces  map[string]string `json:"namespaces"` // ipc, uts, pid, cgroup → mode
	Devices     []string          `json:"devices,omitempty"`
	Env         []string          `json:"env"` // NAME=value, as created
	Ulimits     []Ulimit          `json:"ulimits,omitempty"`
	ShmSize     int64             `json:"shmSize"`
	Umask       string            `json:"umask"`
	OOMScoreAdj int               `json:"oomScoreAdj"`
	Hostname    string            `json:"hostname"`
	GroupAdd    []string          `json:"groupAdd,omitempty"`
	SecurityOpt []string          `json:"securityOpt,omitempty"`
	AppArmor    string            `json:"appArmor,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Cgroups     string            `json:"cgroups"`
}

// VerifyExecs returns every exec session that is not what a join of sourceosctl's is: one
// run privileged or as another user than the container's.
func VerifyExecs(want Spec, execs []ExecSession) []string {
	var d []string
	for _, x := range execs {
		switch {
		case x.Privileged:
			d = append(d, fmt.Sprintf("exec session %.12s ran privileged (%s): not a join of sourceosctl's", x.ID, strings.Join(x.Command, " ")))
		case x.User != "" && x.User != want.User:
			d = append(d, fmt.Sprintf("exec session %.12s ran as user %s (want %s): not a join of sourceosctl's", x.ID, x.User, want.User))
		}
	}
	return d
}

// ExecSession is one podman exec in a container, as the server reports it.
type ExecSession struct {
	ID         string   `json:"id"`
	Running    bool     `json:"running"`
	Privileged bool     `json:"privileged"`
	User       string   `json:"user,omitempty"`
	Command    []string `json:"command,omitempty"`
}

// Applied is what a server that applied every setting of spec reports for the container:
// the observation Verify accepts without a difference.
func Applied(spec Spec) Observed {
	o := Observed{Init: spec.Init, CapDrop: spec.CapDrop, CapAdd: spec.CapAdd, ReadOnlyRoot: spec.ReadOnlyRoot,
		NoNewPrivileges: spec.NoNewPrivileges, User: spec.User, UserNS: spec.UserNS, Network: spec.Network,
		Binds: spec.Mounts, Limits: spec.Limits}
	for _, v := range spec.Volumes {
		o.Volumes = append(o.Volumes, Volume{Name: v.Name, Target: v.Target, ReadOnly: v.ReadOnly})
	}
	for _, t := range spec.Tmpfs {
		o.Tmpfs = append(o.Tmpfs, t.Target)
	}
	o.Namespaces = map[string]string{}
	for _, ns := range spec.Namespaces {
		o.Namespaces[ns] = "private"
	}
	o.Env = []string{"container=podman", "HOSTNAME=" + spec.Hostname}
	for k, v := range spec.Env {
		o.Env = append(o.Env, k+"="+v)
	}
	o.ShmSize, o.Umask, o.OOMScoreAdj, o.Hostname = spec.ShmSizeBytes, spec.Umask, spec.OOMScoreAdj, spec.Hostname
	o.SecurityOpt = []string{"no-new-privileges"}
	o.Cgroups = "default"
	return o
}

// defaultCaps are the capabilities every Podman release since 4.0 grants by default; a
// container with all capabilities dropped must show each of them dropped (servers list
// them one by one rather than as ALL).
var defaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// Verify compares what the server created with the spec, as an allowlist: anything present
// that the spec did not ask for, or that differs, is a difference, each naming the field. An
// empty result means the server applied the plan; anything else means it did not — its own
// configuration added or weakened something — and the container must not start. image is the
// image the container was created from: its environment is part of what is expected.
func Verify(want Spec, image Image, got Observed) []string {
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
	for _, ns := range want.Namespaces {
		// Podman reports a private IPC namespace as "shareable" (its default: own namespace,
		// joinable by a pod's other containers, of which a session has none).
		if mode := got.Namespaces[ns]; mode != "private" && !(ns == "ipc" && mode == "shareable") {
			add("%s namespace is %q (want private)", ns, mode)
		}
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
	if w, g := volumeSet(want.Volumes), volumeSet(got.Volumes); w != g {
		add("volumes are [%s] (want [%s])", g, w)
	}
	for _, m := range got.OtherMounts {
		add("mount %s was not planned", m)
	}
	for _, o := range got.Overlays {
		if !plannedOverlay(want.Overlays, o) {
			add("overlay mount %s at %s was not planned", o.Source, o.Target)
		}
	}
	for _, dev := range got.Devices {
		add("device %s was not planned", dev)
	}
	diffs = append(diffs, verifyEnv(want, image, got.Env)...)
	diffs = append(diffs, verifySettings(want, got)...)
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

// verifySettings compares what the spec asked for explicitly so no server default applies.
func verifySettings(want Spec, got Observed) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if want.Hostname != "" && got.Hostname != want.Hostname {
		add("hostname is %q (want %q)", got.Hostname, want.Hostname)
	}
	if want.ShmSizeBytes > 0 && got.ShmSize != want.ShmSizeBytes {
		add("/dev/shm is %d bytes (want %d)", got.ShmSize, want.ShmSizeBytes)
	}
	if want.Umask != "" && got.Umask != want.Umask {
		add("umask is %s (want %s)", got.Umask, want.Umask)
	}
	if got.OOMScoreAdj != want.OOMScoreAdj {
		add("OOM score adjustment is %d (want %d)", got.OOMScoreAdj, want.OOMScoreAdj)
	}
	if len(got.GroupAdd) > 0 {
		add("supplementary groups %s were not planned", strings.Join(got.GroupAdd, ","))
	}
	if got.Cgroups != "" && got.Cgroups != "default" && got.Cgroups != "enabled" {
		add("cgroups are %q: resource limits would not apply", got.Cgroups)
	}
	if got.AppArmor == "unconfined" {
		add("AppArmor profile is unconfined")
	}
	for _, opt := range got.SecurityOpt {
		switch {
		case opt == "no-new-privileges", opt == "no-new-privileges:true", opt == "no-new-privileges=true":
		case want.SecurityLabel != "" && opt == "label="+want.SecurityLabel:
		case want.SeccompProfile != "" && opt == "seccomp="+want.SeccompProfile:
		default:
			add("security option %s was not planned", opt)
		}
	}
	// Open files and processes keep the service's own limits (a session cannot set them
	// higher than the service's hard limits, which it cannot know); any other is a grant.
	for _, u := range got.Ulimits {
		if u.Name != "RLIMIT_NOFILE" && u.Name != "RLIMIT_NPROC" {
			add("ulimit %s=%d:%d was not planned", u.Name, u.Soft, u.Hard)
		}
	}
	for _, k := range sortedKeys(got.Annotations) {
		if !runtimeAnnotation(k) {
			add("annotation %s was not planned", k)
		}
	}
	return diffs
}

// runtimeAnnotation reports whether an annotation is one Podman itself sets on every
// container (bookkeeping); others, such as run.oci.keep_original_groups, change what the
// runtime does.
func runtimeAnnotation(key string) bool {
	switch {
	case key == "io.container.manager", strings.HasPrefix(key, "io.podman.annotations."),
		strings.HasPrefix(key, "io.kubernetes.cri-o."), strings.HasPrefix(key, "org.opencontainers.image."):
		return true
	}
	return false
}

// podmanEnv are the variables Podman adds to every container: container=podman always;
// HOSTNAME, TERM (when the spec sets none) and PATH (when the image sets none) with the values
// it chooses.
var podmanEnv = map[string]bool{"HOSTNAME": true, "TERM": true, "PATH": true}

// verifyEnv checks the created environment as an allowlist: the spec's variables and the
// image's with their values, Podman's own, and the secrets' variables by name. Values are
// never printed: a variable may hold a secret.
func verifyEnv(want Spec, image Image, env []string) []string {
	var diffs []string
	imageEnv := map[string]string{}
	for _, kv := range image.Env {
		k, v, _ := strings.Cut(kv, "=")
		imageEnv[k] = v
	}
	secrets := map[string]bool{}
	for _, s := range want.Secrets {
		secrets[s.EnvVar] = true
	}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		switch w, planned := want.Env[name]; {
		case planned:
			if value != w {
				diffs = append(diffs, fmt.Sprintf("environment variable %s has another value than planned", name))
			}
		case secrets[name]:
		case name == "container":
			if value != "podman" {
				diffs = append(diffs, "environment variable container has another value than podman")
			}
		case hasKey(imageEnv, name):
			if value != imageEnv[name] {
				diffs = append(diffs, fmt.Sprintf("environment variable %s has another value than the image's", name))
			}
		case podmanEnv[name]:
		default:
			diffs = append(diffs, fmt.Sprintf("environment variable %s was not planned", name))
		}
	}
	return diffs
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func volumeSet(vs []Volume) string {
	var parts []string
	for _, v := range vs {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		parts = append(parts, v.Name+"->"+path.Clean(v.Target)+":"+mode)
	}
	return sortedJoin(parts)
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

func plannedOverlay(planned []Overlay, o Overlay) bool {
	for _, p := range planned {
		if path.Clean(p.Target) == path.Clean(o.Target) && (o.Source == "" || path.Clean(p.Source) == path.Clean(o.Source)) &&
			(o.Upper == "" || path.Clean(p.Upper) == path.Clean(o.Upper)) {
			return true
		}
	}
	return false
}
