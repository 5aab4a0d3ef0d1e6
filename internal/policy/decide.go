package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// Host is what the policy needs to know about the machine.
type Host struct {
	OS         string
	Home       string
	RuntimeDir string // XDG_RUNTIME_DIR, for the rootless sockets
	// Extra are protected paths known only at run time, such as the Podman socket in use.
	Extra []Protected
	// EvalSymlinks, Lstat and Stat are the file system; nil means the real one.
	EvalSymlinks func(string) (string, error)
	Lstat        func(string) (fs.FileInfo, error)
	Stat         func(string) (fs.FileInfo, error)
}

func (h Host) evalSymlinks(p string) (string, error) {
	if h.EvalSymlinks != nil {
		return h.EvalSymlinks(p)
	}
	return filepath.EvalSymlinks(p)
}

func (h Host) stat(p string) (fs.FileInfo, error) {
	if h.Stat != nil {
		return h.Stat(p)
	}
	return os.Stat(p)
}

func (h Host) lstat(p string) (fs.FileInfo, error) {
	if h.Lstat != nil {
		return h.Lstat(p)
	}
	return os.Lstat(p)
}

// resolveExisting resolves symlinks in the longest existing prefix of path, so that a
// protected path that does not exist yet still compares correctly (/var/run/x → /run/x).
func (h Host) resolveExisting(path string) string {
	rest := ""
	for p := path; ; p = filepath.Dir(p) {
		if r, err := h.evalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		if filepath.Dir(p) == p {
			return path
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// Request is what the command line asks for.
type Request struct {
	Tool           string   // tool.Shell, a built-in tool or a custom tool
	Repo           string   // absolute, cleaned (not yet symlink-resolved)
	Secrets        []string // --secret NAME
	AllowProtected []string // --allow-protected PATH, absolute and cleaned
	// AllowHosts are egress rules added for this session only (--allow-host), already
	// checked with egress.ParseRule.
	AllowHosts []string
	// Auth are the --auth names: credentials the profile declares for injection, and git.
	Auth []string
}

// Decision is everything the policy decided for one session. Its canonical JSON (see Hash)
// holds no timestamps and no secret values, so the same inputs always give the same hash.
type Decision struct {
	Profile         ProfileRef       `json:"profile"`
	Tool            string           `json:"tool"`
	Mounts          []MountDecision  `json:"mounts"`
	Network         string           `json:"network"`
	Egress          *EgressDecision  `json:"egress,omitempty"`
	CapDrop         []string         `json:"capDrop"`
	CapAdd          []string         `json:"capAdd"`
	NoNewPrivileges bool             `json:"noNewPrivileges"`
	ReadOnlyRoot    bool             `json:"readOnlyRoot"`
	Limits          Limits           `json:"limits"`
	Secrets         []SecretDecision `json:"secrets"`
	Env             []EnvDecision    `json:"env"`
	// GitIdentity gives the tool the host's git user.name and user.email (--auth git).
	GitIdentity bool      `json:"gitIdentity,omitempty"`
	Refusals    []Refusal `json:"refusals"`
}

type ProfileRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// MountDecision says whether one requested mount is allowed, and why.
type MountDecision struct {
	Role     string `json:"role"`     // workspace or mount
	Declared string `json:"declared"` // as given, made absolute
	Source   string `json:"source"`   // symlinks resolved: what would be mounted
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
	Allowed  bool   `json:"allowed"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
}

type Limits struct {
	CPUs      float64 `json:"cpus"`
	MemoryMiB int     `json:"memoryMiB"`
	Pids      int     `json:"pids"`
	Enforce   string  `json:"enforce"`
}

// SecretDecision records an admitted (or refused) secret by name and source kind only.
type SecretDecision struct {
	Name   string `json:"name"`
	EnvVar string `json:"envVar"`
	Source string `json:"source"` // env:NAME, file:PATH or command:ARGV; never the value
	// Command is the program (and arguments) a command: source runs.
	Command []string `json:"command,omitempty"`
	Allowed bool     `json:"allowed"`
	Reason  string   `json:"reason"`
	// Inject: the container gets a placeholder, and the gateway puts the value into requests
	// to these hosts only.
	Inject []profile.Inject `json:"inject,omitempty"`
}

// EnvDecision is a host environment variable passed through by name.
type EnvDecision struct {
	Name    string `json:"name"`
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason"`
}

// Refusal is one reason the session may not run, with the fix.
type Refusal struct {
	Subject string `json:"subject"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason"`
	Fix     string `json:"fix"`
}

// Rules, as they appear in decisions and messages.
const (
	RuleAllowlisted     = "allowlisted"
	RuleOptIn           = "protected-with-opt-in"
	RuleProtected       = "protected-path"
	RuleParentProtected = "parent-of-protected-path"
	RuleSymlinkOutside  = "symlink-outside-allowlist"
	RuleMissing         = "source-missing"
	RuleNotADirectory   = "not-a-directory"
	RuleToolDisabled    = "tool-not-enabled"
	RuleSecretDoor      = "secrets-door"
	RuleSensitiveEnv    = "sensitive-env"
	RuleUnusedOptIn     = "unused-opt-in"
	RoleWorkspace       = "workspace"
	RoleMount           = "mount"
	capabilitiesDropped = "ALL"
)

// Decide applies the policy. It never fails: refusals are part of the Decision, and
// Decision.Err turns them into a *RefusedError.
func Decide(p *profile.Profile, req Request, h Host) *Decision {
	s := p.Spec
	d := &Decision{
		Profile:         ProfileRef{Name: p.Metadata.Name, SHA256: p.SHA256},
		Tool:            req.Tool,
		Network:         s.Network.Mode,
		CapDrop:         []string{capabilitiesDropped},
		CapAdd:          []string{},
		NoNewPrivileges: true,
		ReadOnlyRoot:    true,
		Limits:          Limits{CPUs: s.Resources.CPUs, MemoryMiB: s.Resources.MemoryMiB, Pids: s.Resources.Pids, Enforce: s.Resources.Enforce},
		Mounts:          []MountDecision{},
		Secrets:         []SecretDecision{},
		Env:             []EnvDecision{},
		Refusals:        []Refusal{},
	}
	entry := d.decideTool(p, req.Tool)
	d.decideMounts(p, req, h)
	req.Secrets = append([]string(nil), req.Secrets...)
	d.decideAuth(p, entry, &req)
	d.decideSecrets(p, entry, req)
	if entry != nil {
		d.decideEnv(entry.Env)
	}
	if s.Network.Mode == profile.NetworkGateway {
		d.Egress = decideEgress(s.Network.Egress, req)
	}
	d.decideInjection(p)
	return d
}

func (d *Decision) decideTool(p *profile.Profile, name string) *profile.Tool {
	if name == tool.Shell {
		return nil
	}
	t := p.Spec.Tools.Entry(name)
	if t != nil && t.Enabled {
		return t
	}
	enabled := p.Spec.Tools.Enabled()
	list := "none; enable one under spec.tools"
	if len(enabled) > 0 {
		list = strings.Join(enabled, ", ")
	}
	reason := fmt.Sprintf("tool %q is not enabled in profile %s (enabled: %s)", name, p.Metadata.Name, list)
	if _, builtin := tool.Builtin(name); t == nil && !builtin {
		reason = fmt.Sprintf("tool %q is not defined in profile %s (enabled: %s)", name, p.Metadata.Name, list)
	}
	fix := fmt.Sprintf("set spec.tools.%s.enabled: true in the profile, or choose an enabled tool", name)
	if _, builtin := tool.Builtin(name); t == nil && !builtin {
		fix = "define it under spec.tools.custom (name, command, enabled: true) in the profile, or choose an enabled tool"
	}
	d.refuse(Refusal{Subject: "tool " + name, Rule: RuleToolDisabled, Reason: reason, Fix: fix})
	return nil
}

func (d *Decision) refuse(r Refusal) { d.Refusals = append(d.Refusals, r) }

type requested struct {
	role, declared, target   string
	readOnly, allowProtected bool
}

func (d *Decision) decideMounts(p *profile.Profile, req Request, h Host) {
	s := p.Spec
	reqs := []requested{{role: RoleWorkspace, declared: req.Repo, target: s.Workspace.MountPath, readOnly: s.Workspace.ReadOnly}}
	for _, m := range s.Mounts {
		reqs = append(reqs, requested{role: RoleMount, declared: m.Source, target: m.Target, readOnly: m.ReadOnly, allowProtected: m.AllowProtected})
	}
	protected := h.protected()
	// The allowlist: the declared sources themselves and the machine's shared roots. A
	// source that is itself a symlink must land inside one of the others.
	var roots []string
	if s.Machine != nil {
		for _, v := range s.Machine.Volumes {
			roots = append(roots, h.resolveExisting(filepath.Clean(v)))
		}
	}
	for _, r := range reqs {
		if fi, err := h.lstat(r.declared); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			roots = append(roots, h.resolveExisting(r.declared))
		}
	}
	used := map[string]bool{}
	for _, r := range reqs {
		md := d.judge(r, protected, roots, req.AllowProtected, h)
		if md.Rule == RuleOptIn {
			used[md.Declared], used[md.Source] = true, true
		}
		d.Mounts = append(d.Mounts, md)
	}
	for _, a := range req.AllowProtected {
		if !used[a] {
			d.refuse(Refusal{Subject: "--allow-protected " + a, Rule: RuleUnusedOptIn,
				Reason: "matches no protected mount that the profile marks allowProtected: true",
				Fix:    "remove --allow-protected " + a + ", or mark that mount allowProtected: true in the profile"})
		}
	}
}

func (d *Decision) judge(r requested, protected []protectedPath, roots, optIns []string, h Host) MountDecision {
	md := MountDecision{Role: r.role, Declared: filepath.Clean(r.declared), Target: r.target, ReadOnly: r.readOnly}
	subject := "mount " + md.Declared
	if r.role == RoleWorkspace {
		subject = "repository " + md.Declared
	}
	resolved, err := h.evalSymlinks(md.Declared)
	if err != nil {
		md.Source, md.Rule, md.Reason = md.Declared, RuleMissing, "does not exist or cannot be resolved: "+cause.Root(err).Error()
		d.refuse(Refusal{Subject: subject, Rule: RuleMissing, Reason: md.Reason, Fix: "create it, or correct the path in the profile or on the command line"})
		return md
	}
	md.Source = resolved
	rule, reason, always := checkProtected(md.Declared, resolved, protected)
	if rule == "" {
		if fi, err := h.lstat(md.Declared); err == nil && fi.Mode()&fs.ModeSymlink != 0 && !insideAny(resolved, roots) {
			rule, reason = RuleSymlinkOutside, fmt.Sprintf("is a symlink to %s, outside the allowlisted paths", resolved)
		}
	}
	if rule == "" && r.role == RoleWorkspace {
		if fi, err := h.stat(resolved); err == nil && !fi.IsDir() {
			rule, reason = RuleNotADirectory, "is a file, not a directory: the workspace is a repository's directory"
		}
	}
	switch {
	case rule == "":
		md.Allowed, md.Rule, md.Reason = true, RuleAllowlisted, "declared by the "+declaredBy(r.role)
	case rule == RuleProtected || rule == RuleParentProtected:
		if !always && r.allowProtected && (contains(optIns, md.Declared) || contains(optIns, resolved)) {
			md.Allowed, md.Rule, md.Reason = true, RuleOptIn, reason+"; allowed by allowProtected in the profile and --allow-protected"
			break
		}
		md.Rule, md.Reason = rule, reason
		fix := fixFor(rule, r, md)
		if always {
			fix = "nothing can allow it: a session that could reach sourceosctl's own state could forge its record; mount another directory"
		}
		d.refuse(Refusal{Subject: subject, Rule: rule, Reason: reason, Fix: fix})
	default:
		md.Rule, md.Reason = rule, reason
		d.refuse(Refusal{Subject: subject, Rule: rule, Reason: reason, Fix: fixFor(rule, r, md)})
	}
	return md
}

func declaredBy(role string) string {
	if role == RoleWorkspace {
		return "command line (--repo) or the profile's spec.workspace.repo"
	}
	return "profile's spec.mounts"
}

func fixFor(rule string, r requested, md MountDecision) string {
	switch {
	case rule == RuleSymlinkOutside && r.role == RoleWorkspace:
		return "pass the real path instead: --repo " + md.Source
	case rule == RuleSymlinkOutside:
		return "use the real path " + md.Source + " as the mount source, if it should be shared"
	case r.role == RoleWorkspace:
		return "point --repo at the repository itself, e.g. --repo ~/dev/app"
	}
	if r.allowProtected {
		return "it is marked allowProtected in the profile: repeat it on the command line with --allow-protected " + md.Declared + ", or remove the mount"
	}
	return "remove the mount, or mark it allowProtected: true in the profile and repeat it on the command line with --allow-protected " + md.Declared
}

// checkProtected judges both the declared and the resolved path against both forms of every
// protected path, so neither a symlink nor a symlinked protected path slips through. always
// is set when the path matched is one nothing can allow (or lies below one).
func checkProtected(declared, resolved string, protected []protectedPath) (rule, reason string, always bool) {
	// Being (inside) a protected path is the stronger finding; look for it across the whole
	// list before looking for protected paths below the requested one.
	for _, p := range protected {
		for _, path := range []string{declared, resolved} {
			for _, pp := range []string{p.lexical, p.resolved} {
				switch {
				case path == pp:
					return RuleProtected, fmt.Sprintf("is %s (%s), a protected path", pp, p.What), p.Always
				case !p.Exact && within(path, pp):
					return RuleProtected, fmt.Sprintf("is inside %s (%s), a protected path", pp, p.What), p.Always
				}
			}
		}
	}
	// A parent of something nothing can allow is itself never allowed: report that first.
	var found string
	for _, p := range protected {
		for _, path := range []string{declared, resolved} {
			for _, pp := range []string{p.lexical, p.resolved} {
				if within(pp, path) {
					if p.Always {
						return RuleParentProtected, fmt.Sprintf("contains %s (%s), a protected path", pp, p.What), true
					}
					if found == "" {
						found = fmt.Sprintf("contains %s (%s), a protected path", pp, p.What)
					}
				}
			}
		}
	}
	if found != "" {
		return RuleParentProtected, found, false
	}
	return "", "", false
}

func insideAny(path string, roots []string) bool {
	for _, r := range roots {
		if within(path, r) {
			return true
		}
	}
	return false
}

func (d *Decision) decideSecrets(p *profile.Profile, entry *profile.Tool, req Request) {
	declared := map[string]profile.Secret{}
	for _, s := range p.Spec.Secrets {
		declared[s.Name] = s
	}
	for _, name := range req.Secrets {
		sec, ok := declared[name]
		sd := SecretDecision{Name: name}
		var reason, fix string
		switch {
		case !ok:
			reason, fix = fmt.Sprintf("secret %q is not declared in the profile's spec.secrets", name), "declare it under spec.secrets with fromEnv or fromFile"
		case req.Tool == tool.Shell:
			reason, fix = "the shell receives no secrets; only tools that list them do", "use run --tool NAME with a tool that lists the secret"
		case entry == nil:
			reason, fix = fmt.Sprintf("tool %q cannot receive secrets because it is not enabled", req.Tool), "enable the tool first"
		case !contains(entry.Secrets, name):
			reason, fix = fmt.Sprintf("tool %q does not list secret %q in its secrets", req.Tool, name), fmt.Sprintf("add %s to the tool's secrets in the profile", name)
		}
		if ok {
			sd.EnvVar = sec.Target
			sd.Source = "env:" + sec.FromEnv
			if sec.FromFile != "" {
				sd.Source = "file:" + sec.FromFile
			}
			if len(sec.FromCommand) > 0 {
				sd.Source, sd.Command = "command:"+strings.Join(sec.FromCommand, " "), sec.FromCommand
			}
		}
		if reason == "" {
			sd.Allowed, sd.Reason = true, "declared, listed by the tool, and requested with --secret"
		} else {
			sd.Reason = reason
			d.refuse(Refusal{Subject: "secret " + name, Rule: RuleSecretDoor, Reason: reason, Fix: fix})
		}
		d.Secrets = append(d.Secrets, sd)
	}
	sort.Slice(d.Secrets, func(i, j int) bool { return d.Secrets[i].Name < d.Secrets[j].Name })
}

func (d *Decision) decideEnv(names []string) {
	for _, n := range names {
		ed := EnvDecision{Name: n, Allowed: true, Reason: "listed in the tool's env"}
		if profile.SensitiveEnv.MatchString(n) {
			ed.Allowed, ed.Reason = false, "looks like a credential; credentials reach a tool only through the secrets door"
			d.refuse(Refusal{Subject: "env " + n, Rule: RuleSensitiveEnv, Reason: ed.Reason,
				Fix: "declare it under spec.secrets (fromEnv: " + n + "), list it in the tool's secrets, and pass --secret"})
		}
		d.Env = append(d.Env, ed)
	}
}

// Err returns a *RefusedError when anything was refused.
func (d *Decision) Err() error {
	if len(d.Refusals) == 0 {
		return nil
	}
	return &RefusedError{Refusals: d.Refusals}
}

// Hash is the policy hash: SHA-256 of the canonical JSON.
func (d *Decision) Hash() string {
	sum := sha256.Sum256(d.Canonical())
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Canonical is the Decision as JSON with every object's keys sorted and no insignificant
// white space.
func (d *Decision) Canonical() []byte {
	raw, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("policy: marshal decision: %v", err)) // plain data: cannot fail
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		panic(fmt.Sprintf("policy: re-read decision: %v", err))
	}
	out, _ := json.Marshal(generic) // maps marshal with sorted keys
	return out
}

// RefusedError lists everything the policy refused; it maps to exit code 3.
type RefusedError struct {
	Refusals []Refusal
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("refused by policy:")
	for _, r := range e.Refusals {
		fmt.Fprintf(&b, "\n  %s: %s [%s]", r.Subject, r.Reason, r.Rule)
	}
	return b.String()
}

// Hint returns the fix for each refusal.
func (e *RefusedError) Hint() string {
	fixes := make([]string, 0, len(e.Refusals))
	for _, r := range e.Refusals {
		fixes = append(fixes, r.Fix)
	}
	return strings.Join(fixes, "\n  hint: ")
}
