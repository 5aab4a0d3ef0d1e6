package profile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/tool"
	"github.com/sourceos/sourceosctl/internal/yamlschema"
)

// MaxSize is the largest profile file accepted.
const MaxSize = 1 << 20

// Env is what resolving a profile needs to know about the host.
type Env struct {
	Home    string // the user's home directory, for ~
	WorkDir string // for relative paths in a profile that did not come from a file
}

// Load reads, validates and resolves the profile at path.
func Load(path string, env Env) (*Profile, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	base := filepath.Dir(path)
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	return p, p.resolve(env.Home, base)
}

// LoadBytes validates and resolves a profile that did not come from a file on disk (the
// embedded default); relative paths resolve against env.WorkDir.
func LoadBytes(name string, data []byte, env Env) (*Profile, error) {
	p, err := Parse(name, data)
	if err != nil {
		return nil, err
	}
	return p, p.resolve(env.Home, env.WorkDir)
}

// ReadFile reads a profile file, refusing directories and files over MaxSize; its errors are
// *LoadError like every other profile problem.
func ReadFile(path string) ([]byte, error) {
	return yamlschema.ReadFile(path, MaxSize, profileKind)
}

// Parse validates profile YAML without resolving paths against the host: name is used in
// messages. It never panics, whatever data holds.
func Parse(name string, data []byte) (*Profile, error) {
	le := &LoadError{File: name}
	t := yamlschema.Read(data, profileKind, le)
	if t == nil {
		return nil, le.OrNil()
	}
	if _, ok := t.Root.(map[string]any); !ok {
		le.Add(t.Locate("").Line, "", "must be a YAML mapping with apiVersion, kind, metadata and spec")
		return nil, le.OrNil()
	}
	s, err := profileSchema()
	if err != nil {
		return nil, err
	}
	s.Validate(t, le)
	if len(le.Problems) > 0 {
		return nil, le.OrNil()
	}
	p, err := decode(t.Root)
	if err != nil {
		le.Add(0, "", "%v", err)
		return nil, le.OrNil()
	}
	p.applyDefaults()
	p.check(t, le)
	if err := le.OrNil(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.Source, p.SHA256 = name, hex.EncodeToString(sum[:])
	return p, nil
}

func decode(root any) (*Profile, error) {
	raw, err := json.Marshal(root)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("does not match the profile format: %v", err)
	}
	return &p, nil
}

func (p *Profile) applyDefaults() {
	s := &p.Spec
	if s.Workspace.MountPath == "" {
		s.Workspace.MountPath = DefaultMountPath
	}
	if s.Network.Mode == "" {
		s.Network.Mode = DefaultNetwork
		if s.Network.Egress != nil {
			s.Network.Mode = NetworkGateway
		}
	}
	if s.Resources.CPUs == 0 {
		s.Resources.CPUs = DefaultCPUs
	}
	if s.Resources.MemoryMiB == 0 {
		s.Resources.MemoryMiB = DefaultMemoryMiB
	}
	if s.Resources.Pids == 0 {
		s.Resources.Pids = DefaultPids
	}
	if s.Resources.Enforce == "" {
		s.Resources.Enforce = EnforceRequired
	}
	if s.Host.Provider == "" {
		s.Host.Provider = defaultProvider[s.Host.OS]
	}
	for i := range s.Secrets {
		if s.Secrets[i].Target == "" {
			s.Secrets[i].Target = s.Secrets[i].defaultTarget()
		}
	}
}

var defaultProvider = map[string]string{"linux": "native", "darwin": "applehv", "windows": "wsl"}

// providersFor lists the providers Podman offers on each host OS.
var providersFor = map[string][]string{
	"linux":   {"native", "qemu"},
	"darwin":  {"applehv", "libkrun", "qemu"}, // qemu: Podman 4 on macOS
	"windows": {"wsl", "hyperv"},
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s Secret) defaultTarget() string {
	if s.FromEnv != "" {
		return s.FromEnv
	}
	return strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
}

// SensitiveEnv matches variable names that usually hold credentials: those go through the
// secrets door, never as plain values or pass-through (whose values podman inspect shows).
var SensitiveEnv = regexp.MustCompile(`(?i)(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|SESSION|COOKIE|PRIVATE)`)

// envName is a variable name spec.env may set (the schema's envName).
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// reservedEnv are variables sourceosctl or Podman set in every container.
var reservedEnv = map[string]bool{"HOME": true, "TERM": true, "PATH": true, "container": true, "HOSTNAME": true}

// check enforces the rules a JSON Schema cannot express, each located like schema errors.
func (p *Profile) check(t *yamlschema.Tree, le *LoadError) {
	s := &p.Spec
	at := func(ptr string) yamlschema.Location { return t.Locate(ptr) }

	if ok := contains(providersFor[s.Host.OS], s.Host.Provider); !ok {
		l := at("/spec/host/provider")
		le.Add(l.Line, "spec.host.provider", "%s does not run on %s; use one of %s", s.Host.Provider, s.Host.OS, strings.Join(providersFor[s.Host.OS], ", "))
	} else if s.Machine == nil && s.Host.Provider != "native" {
		l := at("/spec/host")
		le.Add(l.KeyLine, "spec.machine", "is required with provider %s (Podman runs in a VM there); add machine: {name: sourceos-agent}", s.Host.Provider)
	}
	if s.Machine != nil && s.Host.Provider == "native" {
		l := at("/spec/machine")
		le.Add(l.KeyLine, "spec.machine", "cannot be used with provider native; set spec.host.provider to qemu or remove the machine")
	}

	for i, src := range s.Image.Sources {
		l := at(fmt.Sprintf("/spec/image/sources/%d", i))
		switch {
		case (src.Registry == "") == (src.Archive == ""):
			le.Add(l.Line, l.Field, "set exactly one of registry (an image reference) or archive (a URL or path of a `podman save` archive)")
		case src.Archive != "" && src.SHA256 == "":
			le.Add(l.Line, l.Field+".sha256", "is required with archive: the download is checked against it before it is loaded (sha256sum ARCHIVE)")
		case src.Registry != "" && src.SHA256 != "":
			le.Add(l.Line, l.Field+".sha256", "applies to archives only; pin a registry image with spec.image.digest")
		case src.Archive != "" && src.TLSVerify != nil:
			le.Add(l.Line, l.Field+".tlsVerify", "applies to registries only; remove it")
		}
	}

	checkTargets(s, at, le)
	for i, inc := range s.Workspace.Include {
		if clean := path.Clean(inc); clean == ".." || strings.HasPrefix(clean, "../") || clean == "." || clean == ".git" || strings.HasPrefix(clean, ".git/") {
			l := at(fmt.Sprintf("/spec/workspace/include/%d", i))
			le.Add(l.Line, l.Field, "%q is not an ignored path inside the repository; name one such as node_modules", inc)
		}
	}
	if s.Workspace.Mode != "" && s.Workspace.Mode != "copy" && s.Workspace.Mode != "direct" {
		l := at("/spec/workspace/mode")
		le.Add(l.Line, l.Field, "must be copy or direct")
	}

	checkEgress(s.Network, at, le)
	for _, name := range slices.Sorted(maps.Keys(s.Env)) {
		l := at("/spec/env/" + name)
		switch {
		case !envName.MatchString(name):
			le.Add(l.KeyLine, "spec.env."+name, "must be an environment variable name (letters, digits, '_'; not starting with a digit)")
		case SensitiveEnv.MatchString(name):
			le.Add(l.KeyLine, "spec.env."+name, "looks like a credential, and spec.env values are plain text in the profile, the plan and podman inspect; declare it under spec.secrets instead")
		case reservedEnv[name] || strings.HasPrefix(name, "SOURCEOS_") || strings.HasSuffix(strings.ToUpper(name), "_PROXY"):
			le.Add(l.KeyLine, "spec.env."+name, "is set by sourceosctl itself (HOME, TERM, PATH, container, SOURCEOS_*, the proxy variables); remove it")
		}
	}

	declared := map[string]bool{}
	for i, sec := range s.Secrets {
		l := at(fmt.Sprintf("/spec/secrets/%d", i))
		if declared[sec.Name] {
			le.Add(l.Line, l.Field+".name", "secret %q is declared twice; keep one", sec.Name)
		}
		declared[sec.Name] = true
		if n := btoi(sec.FromEnv != "") + btoi(sec.FromFile != "") + btoi(len(sec.FromCommand) > 0); n != 1 {
			le.Add(l.Line, l.Field, "set exactly one of fromEnv (a host environment variable), fromFile (a host file) or fromCommand (a host program's output, e.g. [gh, auth, token]) for the value's source")
		}
		for j, in := range sec.Inject {
			li := at(fmt.Sprintf("/spec/secrets/%d/inject/%d", i, j))
			if err := egress.CheckInjection(egress.Injection{Name: sec.Name, Hosts: in.Hosts, Header: in.Header, Scheme: in.Scheme, User: in.User}); err != nil {
				le.Add(li.Line, li.Field, "%v", err)
			}
		}
		if len(sec.Inject) > 0 && s.Network.Mode != NetworkGateway {
			le.Add(l.Line, l.Field+".inject", "needs spec.network: gateway (the egress gateway injects the value); it is %s", s.Network.Mode)
		}
	}
	checkTool := func(tool *Tool, ptr string) {
		for j, sec := range tool.Secrets {
			if !declared[sec] {
				l := at(fmt.Sprintf("%s/secrets/%d", ptr, j))
				le.Add(l.Line, l.Field, "secret %q is not declared in spec.secrets; declare it there (name and fromEnv or fromFile) or remove it", sec)
			}
		}
	}
	for _, name := range tool.Names() {
		if e := s.Tools.Entry(name); e != nil {
			checkTool(e, "/spec/tools/"+name)
		}
	}
	names := map[string]bool{}
	for i := range s.Tools.Custom {
		ct := &s.Tools.Custom[i]
		ptr := fmt.Sprintf("/spec/tools/custom/%d", i)
		if names[ct.Name] || tool.Reserved(ct.Name) {
			l := at(ptr + "/name")
			le.Add(l.Line, l.Field, "the name %q is taken (built-in or listed before); choose another", ct.Name)
		}
		names[ct.Name] = true
		checkTool(&ct.Tool, ptr)
	}
}

// checkEgress parses every egress rule where it is written; an egress policy needs the
// gateway mode, the only one that applies it.
func checkEgress(n Network, at func(string) yamlschema.Location, le *LoadError) {
	if n.Egress == nil {
		return
	}
	if n.Mode != NetworkGateway {
		l := at("/spec/network/mode")
		le.Add(l.Line, "spec.network.mode", "is %s, which ignores spec.network.egress: set mode: gateway (or leave it out) to apply the egress policy, or remove the egress rules", n.Mode)
	}
	for _, list := range []struct {
		name  string
		rules []string
	}{{"allow", n.Egress.Allow}, {"deny", n.Egress.Deny}} {
		for i, r := range list.rules {
			if _, err := egress.ParseRule(r, "profile"); err != nil {
				l := at(fmt.Sprintf("/spec/network/egress/%s/%d", list.name, i))
				le.Add(l.Line, l.Field, "%v; write host, *.suffix, host:port, an address or a CIDR prefix (10.0.0.0/8:22)", err)
			}
		}
	}
}

// checkTargets refuses mount targets that would replace part of the container (system
// directories, the tool's home, the tmpfs for temporary files) and targets that coincide
// with or lie inside another mount's: Podman would mount one over the other.
func checkTargets(s *Spec, at func(string) yamlschema.Location, le *LoadError) {
	type target struct{ path, field, ptr string }
	all := []target{{s.Workspace.MountPath, "spec.workspace.mountPath", "/spec/workspace/mountPath"}}
	for i := range s.Mounts {
		all = append(all, target{s.Mounts[i].Target, fmt.Sprintf("spec.mounts[%d].target", i), fmt.Sprintf("/spec/mounts/%d/target", i)})
	}
	for i, t := range all {
		l := at(t.ptr)
		if problem := container.TargetProblem(t.path); problem != "" {
			le.Add(l.Line, t.field, "%s %s", t.path, problem)
			continue
		}
		for _, prev := range all[:i] {
			switch {
			case path.Clean(t.path) == path.Clean(prev.path):
				le.Add(l.Line, t.field, "%s is already used by %s; give each mount its own target", t.path, prev.field)
			case container.Nested(t.path, prev.path):
				le.Add(l.Line, t.field, "%s overlaps %s (%s): give each mount a target of its own, neither inside the other", t.path, prev.path, prev.field)
			default:
				continue
			}
			break
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resolve makes host paths absolute: ~ is the home directory; relative paths are relative
// to base (the profile file's directory). Symlinks are resolved later, by the policy.
func (p *Profile) resolve(home, base string) error {
	le := &LoadError{File: p.Source}
	fix := func(field string, path *string) {
		if *path == "" {
			return
		}
		r, err := ResolvePath(*path, home, base)
		if err != nil {
			le.Add(0, field, "%v", err)
			return
		}
		*path = r
	}
	s := &p.Spec
	fix("spec.workspace.repo", &s.Workspace.Repo)
	fix("spec.evidence.dir", &s.Evidence.Dir)
	for i := range s.Mounts {
		fix(fmt.Sprintf("spec.mounts[%d].source", i), &s.Mounts[i].Source)
	}
	for i := range s.Secrets {
		fix(fmt.Sprintf("spec.secrets[%d].fromFile", i), &s.Secrets[i].FromFile)
	}
	for i := range s.Image.Sources {
		if src := &s.Image.Sources[i]; src.Archive != "" && !src.IsURL() {
			fix(fmt.Sprintf("spec.image.sources[%d].archive", i), &src.Archive)
		}
	}
	if s.Machine != nil {
		for i := range s.Machine.Volumes {
			fix(fmt.Sprintf("spec.machine.volumes[%d]", i), &s.Machine.Volumes[i])
		}
	}
	return le.OrNil()
}

func isDrivePath(p string) bool {
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') &&
		(p[0] >= 'A' && p[0] <= 'Z' || p[0] >= 'a' && p[0] <= 'z')
}

// ResolvePath expands a leading ~ to home and makes a relative path absolute against base,
// then cleans it. It does not touch the file system.
func ResolvePath(path, home, base string) (string, error) {
	if path == "~" || strings.HasPrefix(path, "~/") || strings.HasPrefix(path, `~\`) {
		if home == "" {
			return "", fmt.Errorf("%s starts with ~ but the home directory is unknown; use an absolute path", path)
		}
		path = filepath.Join(home, filepath.FromSlash(path[1:]))
	} else if strings.HasPrefix(path, "~") {
		return "", fmt.Errorf("%s: only ~/ (your own home) is supported, not ~user", path)
	} else if isDrivePath(path) {
		return path, nil // C:\x is absolute wherever it is read (profiles for Windows hosts)
	}
	if !filepath.IsAbs(path) {
		if base == "" {
			return "", fmt.Errorf("%s is relative and there is no directory to resolve it against; use an absolute path", path)
		}
		path = filepath.Join(base, path)
	}
	return filepath.Clean(path), nil
}
