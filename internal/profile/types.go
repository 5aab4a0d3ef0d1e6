// Package profile loads AgentMachineProfiles: YAML validated against the embedded JSON Schema,
// with errors that name the file, line and field, and paths resolved for the host.
package profile

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/sourceos/sourceosctl/internal/tool"
)

// APIVersion and Kind identify an AgentMachineProfile document.
const (
	APIVersion = "sourceos.dev/v1alpha1"
	Kind       = "AgentMachineProfile"
)

// Defaults applied when a profile leaves a field out.
const (
	DefaultMountPath  = "/workspace"
	DefaultNetwork    = NetworkNone
	DefaultCPUs       = 2.0
	DefaultMemoryMiB  = 4096
	DefaultPids       = 1024
	EnforceRequired   = "required"
	EnforceBestEffort = "best-effort"
)

// Profile is a loaded, validated AgentMachineProfile.
type Profile struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion"`
	Kind       string   `json:"kind" yaml:"kind"`
	Metadata   Metadata `json:"metadata" yaml:"metadata"`
	Spec       Spec     `json:"spec" yaml:"spec"`

	// Source names where the profile came from: a file path or "embedded:defaults/linux.yaml".
	Source string `json:"-" yaml:"-"`
	// SHA256 is the hex digest of the bytes the profile was parsed from.
	SHA256 string `json:"-" yaml:"-"`
}

type Metadata struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
}

type Spec struct {
	Host      Host      `json:"host" yaml:"host"`
	Machine   *Machine  `json:"machine,omitempty" yaml:"machine,omitempty"`
	Image     Image     `json:"image" yaml:"image"`
	Workspace Workspace `json:"workspace" yaml:"workspace"`
	Mounts    []Mount   `json:"mounts,omitempty" yaml:"mounts,omitempty"`
	Tools     Tools     `json:"tools" yaml:"tools"`
	Secrets   []Secret  `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	Network   Network   `json:"network" yaml:"network"`
	Resources Resources `json:"resources" yaml:"resources"`
	Evidence  Evidence  `json:"evidence" yaml:"evidence"`
	// Env are plain, non-secret variables every container of the profile gets (a
	// devcontainer's containerEnv); sourceosctl's own variables win over them.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
}

// Host says which kind of host the profile is written for.
type Host struct {
	OS       string `json:"os" yaml:"os"`
	Provider string `json:"provider,omitempty" yaml:"provider,omitempty"`
}

// Machine is the Podman machine (Linux VM) used on macOS and Windows, optional on Linux.
type Machine struct {
	Name      string   `json:"name" yaml:"name"`
	CPUs      int      `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	MemoryMiB int      `json:"memoryMiB,omitempty" yaml:"memoryMiB,omitempty"`
	DiskGiB   int      `json:"diskGiB,omitempty" yaml:"diskGiB,omitempty"`
	Volumes   []string `json:"volumes,omitempty" yaml:"volumes,omitempty"`
}

type Image struct {
	Ref    string `json:"ref" yaml:"ref"`
	Digest string `json:"digest,omitempty" yaml:"digest,omitempty"`
	// Sources are where `image pull` and `image update` fetch Ref from, in order.
	Sources []ImageSource `json:"sources,omitempty" yaml:"sources,omitempty"`
}

// ImageSource is one place an image can come from: a registry reference, or an archive
// made by `podman save` (an https URL or a host path) with its required SHA-256.
type ImageSource struct {
	Registry  string `json:"registry,omitempty" yaml:"registry,omitempty"`
	TLSVerify *bool  `json:"tlsVerify,omitempty" yaml:"tlsVerify,omitempty"`
	Archive   string `json:"archive,omitempty" yaml:"archive,omitempty"`
	SHA256    string `json:"sha256,omitempty" yaml:"sha256,omitempty"`
}

// IsURL reports whether an archive source is fetched over HTTP(S) rather than read from disk.
func (s ImageSource) IsURL() bool {
	return strings.HasPrefix(s.Archive, "https://") || strings.HasPrefix(s.Archive, "http://")
}

// Workspace is the repository a session works on and where the container sees it.
type Workspace struct {
	Repo      string `json:"repo,omitempty" yaml:"repo,omitempty"`
	MountPath string `json:"mountPath" yaml:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty" yaml:"readOnly,omitempty"`
	// Mode is copy (the default: the session works on its own copy and branch) or direct
	// (the live work tree, its .git read-only).
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Include are ignored paths the copy shows the session (node_modules); the others are
	// hidden.
	Include []string `json:"include,omitempty" yaml:"include,omitempty"`
	// Ports are the ports the project serves inside the container; serve's default port is
	// the first (a devcontainer's forwardPorts).
	Ports []int `json:"ports,omitempty" yaml:"ports,omitempty"`
	// PostCreate runs in a workspace once it is created (up, up --fresh); PostStart each time
	// it comes up. Each is a governed join of the workspace, never run on the host.
	PostCreate []Command `json:"postCreate,omitempty" yaml:"postCreate,omitempty"`
	PostStart  []Command `json:"postStart,omitempty" yaml:"postStart,omitempty"`
}

// Command is a named command line, run without a shell unless it names one.
type Command struct {
	Name    string   `json:"name,omitempty" yaml:"name,omitempty"`
	Command []string `json:"command" yaml:"command"`
}

// Mount is an extra allowlisted host path.
type Mount struct {
	Source         string `json:"source" yaml:"source"`
	Target         string `json:"target" yaml:"target"`
	ReadOnly       bool   `json:"readOnly,omitempty" yaml:"readOnly,omitempty"`
	AllowProtected bool   `json:"allowProtected,omitempty" yaml:"allowProtected,omitempty"`
}

type Tools struct {
	ClaudeCode *Tool        `json:"claude-code,omitempty" yaml:"claude-code,omitempty"`
	Codex      *Tool        `json:"codex,omitempty" yaml:"codex,omitempty"`
	Custom     []CustomTool `json:"custom,omitempty" yaml:"custom,omitempty"`
}

// Entry returns the profile's definition of the tool called name: a built-in tool's
// settings or a custom tool; nil for the shell and for tools the profile does not mention.
func (t *Tools) Entry(name string) *Tool {
	switch name {
	case tool.ClaudeCode:
		return t.ClaudeCode
	case tool.Codex:
		return t.Codex
	}
	for i := range t.Custom {
		if t.Custom[i].Name == name {
			return &t.Custom[i].Tool
		}
	}
	return nil
}

// Enabled lists the tools the profile enables, built-in ones first.
func (t *Tools) Enabled() []string {
	var out []string
	for _, n := range tool.Names() {
		if e := t.Entry(n); e != nil && e.Enabled {
			out = append(out, n)
		}
	}
	for _, c := range t.Custom {
		if c.Enabled {
			out = append(out, c.Name)
		}
	}
	return out
}

// Tool configures a built-in tool. Env lists host environment variable names passed through;
// Secrets lists the declared secrets the tool may receive when the command line opts in.
type Tool struct {
	Enabled bool     `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	Env     []string `json:"env,omitempty" yaml:"env,omitempty"`
	Secrets []string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	// GitIdentity lets --auth git give the tool the host's git user.name and user.email.
	GitIdentity bool `json:"gitIdentity,omitempty" yaml:"gitIdentity,omitempty"`
	// State keeps a built-in tool's configuration directory (its login, settings, history)
	// in a volume of this profile's across sessions; false: a fresh one each session.
	State *bool `json:"state,omitempty" yaml:"state,omitempty"`
}

// KeepsState reports whether the tool's state persists (the default).
func (t *Tool) KeepsState() bool { return t == nil || t.State == nil || *t.State }

type CustomTool struct {
	Name string `json:"name" yaml:"name"`
	Tool `yaml:",inline"`
}

// Secret declares where a secret's value comes from; the value itself never appears here.
type Secret struct {
	Name     string `json:"name" yaml:"name"`
	FromEnv  string `json:"fromEnv,omitempty" yaml:"fromEnv,omitempty"`
	FromFile string `json:"fromFile,omitempty" yaml:"fromFile,omitempty"`
	// FromCommand runs a program on the host (no shell) and takes its standard output, such
	// as [gh, auth, token].
	FromCommand []string `json:"fromCommand,omitempty" yaml:"fromCommand,omitempty"`
	// Target is the environment variable name inside the container (default: FromEnv, or the
	// name upper-cased with '-' as '_').
	Target string `json:"target,omitempty" yaml:"target,omitempty"`
	// Inject keeps the value out of the container: the variable holds a placeholder, and the
	// egress gateway puts the value into requests to these hosts only.
	Inject []Inject `json:"inject,omitempty" yaml:"inject,omitempty"`
}

// Inject is where and how the gateway puts a secret into requests: to Hosts ("host" for
// port 443, or "host:port"), in Header (after Scheme: Bearer, or Basic with User), or, with
// no Header, in whichever request header the tool put the placeholder (never the URL or body).
type Inject struct {
	Hosts  []string `json:"hosts" yaml:"hosts"`
	Header string   `json:"header,omitempty" yaml:"header,omitempty"`
	Scheme string   `json:"scheme,omitempty" yaml:"scheme,omitempty"`
	User   string   `json:"user,omitempty" yaml:"user,omitempty"`
}

// Network modes: no network at all, Podman's bridge (everything open), or no network but the
// session's egress gateway, which lets out only what the egress policy allows.
const (
	NetworkNone    = "none"
	NetworkBridge  = "bridge"
	NetworkGateway = "gateway"
)

// Network is spec.network: a mode, written as a plain string (network: none), or a mapping
// with the gateway's egress policy (network: {mode: gateway, egress: {allow: […]}}).
type Network struct {
	Mode   string  `json:"mode" yaml:"mode"`
	Egress *Egress `json:"egress,omitempty" yaml:"egress,omitempty"`
}

// Egress is the gateway's policy: destinations as egress rules ("host", "*.suffix",
// "host:port", an address or CIDR prefix with an optional port). Deny wins over allow.
type Egress struct {
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty" yaml:"deny,omitempty"`
	// ToolHosts adds the hosts the session's tool needs (its API and sign-in hosts, from
	// the tool catalog) unless false.
	ToolHosts *bool `json:"toolHosts,omitempty" yaml:"toolHosts,omitempty"`
}

// UseToolHosts reports whether the tool's own hosts are allowed (the default).
func (e *Egress) UseToolHosts() bool { return e == nil || e.ToolHosts == nil || *e.ToolHosts }

// UnmarshalJSON reads the plain string form as the mode.
func (n *Network) UnmarshalJSON(b []byte) error {
	var mode string
	if err := json.Unmarshal(b, &mode); err == nil {
		*n = Network{Mode: mode}
		return nil
	}
	type plain Network
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*n = Network(p)
	return nil
}

// MarshalJSON writes a mode without a policy in the plain string form.
func (n Network) MarshalJSON() ([]byte, error) {
	if n.Egress == nil {
		return json.Marshal(n.Mode)
	}
	type plain Network
	return json.Marshal(plain(n))
}

type Resources struct {
	CPUs      float64 `json:"cpus" yaml:"cpus"`
	MemoryMiB int     `json:"memoryMiB" yaml:"memoryMiB"`
	Pids      int     `json:"pids" yaml:"pids"`
	// Enforce is "required" (default) or "best-effort" (run where limits cannot be enforced).
	Enforce string `json:"enforce,omitempty" yaml:"enforce,omitempty"`
}

type Evidence struct {
	Dir  string `json:"dir,omitempty" yaml:"dir,omitempty"`
	Sign *bool  `json:"sign,omitempty" yaml:"sign,omitempty"`
}
