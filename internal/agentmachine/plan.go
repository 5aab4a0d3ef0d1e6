package agentmachine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// PlanSchemaVersion identifies the JSON form of a Plan (`--dry-run -o json`).
const PlanSchemaVersion = "sourceos.dev/agent-machine-plan/v1"

// Label keys put on every session container; `stop` and `status` find sessions by them.
const (
	LabelManaged = "dev.sourceos.agent-machine.managed"
	LabelProfile = "dev.sourceos.agent-machine.profile"
	LabelSession = "dev.sourceos.agent-machine.session"
	LabelRepo    = "dev.sourceos.agent-machine.repo"
	LabelTool    = "dev.sourceos.agent-machine.tool"
)

// Paths inside the container.
const (
	tmpfsSize     = 512 << 20
	fallbackUID   = 1000
	interactiveSh = `if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi`
)

// Facts are what planning needs to know about the host and the Podman service. The caller
// gathers them; Plan itself touches nothing, which is what makes --dry-run honest.
type Facts struct {
	OS, Arch   string
	Home       string
	RuntimeDir string
	UID, GID   int
	// RepoUID and RepoGID own the repository, whose permission bits are RepoMode (0 when
	// unknown); a rootful session runs as its owner when the invoking user is root.
	RepoUID, RepoGID int
	RepoMode         fs.FileMode
	Connection       Connection
	Rootless         bool
	RootlessAssumed  bool   // the service was not reachable; Rootless was inferred
	ServerVersion    string // Podman server version, "" when unknown
	CgroupsVersion   string // "v1" or "v2", "" when unknown
	Term             string
	StdinTTY         bool
	StdoutTTY        bool
	Now              time.Time
	// SessionID, when set, replaces the generated one (tests).
	SessionID string
	// FS overrides the file system used by the policy (tests); nil means the real one.
	FS *policy.Host
	// Own are sourceosctl's own state directories, which nothing may mount (OwnState).
	Own []policy.Protected
	// Local is true when the service runs on this host (a local unix socket): its files can
	// be mounted (the helper). Remote: it runs on another machine that is not a Podman
	// machine of this host's (ssh://, tcp://), so none of this host's paths can be mounted.
	Local, Remote bool
	// Helper is the in-container helper that checks the container from inside before the
	// tool runs; zero when none can be used (another host, a machine).
	Helper HelperRef
	// StateDir is sourceosctl's state directory, where copies live; GitCLI says git is
	// installed (a copy is made and brought back with it).
	StateDir string
	GitCLI   bool
	// Gitlinks lists the submodules a work tree's index records (nil without git): their
	// .git, in a writable work tree, is mounted read-only too.
	Gitlinks func(dir string) []string
	// Shipped are the programs a session on another machine ships there (nil when local,
	// or when this build carries none).
	Shipped *ShippedRef
	// Workspace: the plan is a long-lived workspace's, whose egress gateway must outlive
	// this process (a sidecar, also on this host: Shipped is then set).
	Workspace bool
	// SFTP is the SFTP server a workspace's container mounts (zero: none can be).
	SFTP HelperRef
}

// HelperRef is the helper binary a session mounts: where it is on the host and its digest,
// or the volume of shipped programs it comes from on another machine.
type HelperRef struct {
	Path   string `json:"path,omitempty"`
	Digest string `json:"digest"`
	Volume string `json:"volume,omitempty"`
}

// OwnState lists sourceosctl's own state — its configuration (signing key, profiles), state
// (evidence, caches, service log), data (image manifest, downloads), the profile's own
// evidence directory and the evidence's last-resort directory — as protected paths that no
// opt-in allows: a session that could reach them could read the key or rewrite its record.
func OwnState(d Dirs, tempDir string, uid int, p *profile.Profile) []policy.Protected {
	own := []policy.Protected{
		{Path: d.Config, What: "sourceosctl's configuration: the evidence signing key and profiles"},
		{Path: d.State, What: "sourceosctl's state: evidence bundles and caches"},
		{Path: d.Data, What: "sourceosctl's data: the image manifest and downloads"},
	}
	if p != nil && p.Spec.Evidence.Dir != "" {
		own = append(own, policy.Protected{Path: p.Spec.Evidence.Dir, What: "the profile's evidence directory"})
	}
	if tempDir != "" {
		own = append(own, policy.Protected{Path: filepath.Join(tempDir, fmt.Sprintf("sourceosctl-evidence-%d", uid)), What: "sourceosctl's last-resort evidence directory"})
	}
	out := own[:0]
	for _, o := range own {
		if o.Path != "" {
			o.Always, o.Source = true, "sourceosctl"
			out = append(out, o)
		}
	}
	return out
}

// Connection is the Podman endpoint a plan runs against.
type Connection struct {
	URI    string `json:"uri"`
	Source string `json:"source"`
	// Machine: a Podman machine of this host's (its shared directories are this host's).
	Machine bool `json:"machine,omitempty"`
}

// SessionRequest is what the user asked for.
type SessionRequest struct {
	Tool           string // "shell" or a tool name
	Repo           string // as typed
	Args           []string
	Secrets        []string
	AllowProtected []string
	Keep           bool
	WorkDir        string // for a relative --repo
	// Direct asks for the live work tree instead of a copy (--direct); Branch names the
	// copy's branch (--branch; default agent/<session-id>).
	Direct bool
	Branch string
	// AllowHosts are egress rules for this session only (--allow-host).
	AllowHosts []string
	// Auth are the credentials asked for with --auth (policy.AuthNames).
	Auth []string
	// Workspace names the long-lived workspace the plan is for (up): its container idles once
	// checked and commands join it. "" for a session.
	Workspace string
	// Copy is a workspace's copy, kept since its first up: the plan reuses it.
	Copy *repocopy.Copy
	// IDE: the workspace serves the browser IDE (up --ide): its image is the profile's IDE
	// variant, or the profile's own when it has code-server.
	IDE bool
	// Project is the project command the session runs (test, serve), for the plan and the
	// evidence.
	Project *evidence.Project
	// Export: the plan is written for another service (--dry-run -o kube), so a dry run does
	// not check what this host's service holds (the image).
	Export bool
	// Scratch: Repo is a directory sourceosctl made for this session alone and removes
	// afterwards (new --git's clone): it is mounted directly, with no copy and no warning
	// about a live work tree.
	Scratch bool
}

// Plan is everything a session will do, as plain data.
type Plan struct {
	SchemaVersion   string                  `json:"schemaVersion"`
	SessionID       string                  `json:"sessionId"`
	Profile         ProfileInfo             `json:"profile"`
	Connection      Connection              `json:"connection"`
	Rootless        bool                    `json:"rootless"`
	RootlessAssumed bool                    `json:"rootlessAssumed,omitempty"`
	Image           ImageRef                `json:"image"`
	Tool            ToolPlan                `json:"tool"`
	Repo            string                  `json:"repo"`
	PassEnv         []string                `json:"passEnv"`
	Secrets         []container.Secret      `json:"secrets"`
	SecretSources   []policy.SecretDecision `json:"secretSources"`
	Container       container.Spec          `json:"container"`
	PolicyHash      string                  `json:"policyHash"`
	Decision        *policy.Decision        `json:"decision"`
	Keep            bool                    `json:"keep"`
	// Helper runs first in the container and checks it from inside (absent: inspect only).
	Helper *HelperRef `json:"helper,omitempty"`
	// Programs is the volume of shipped programs a session on another machine's service
	// fills for its helper when no gateway sidecar does.
	Programs *ProgramsPlan `json:"programs,omitempty"`
	// ToolState is the volume keeping the tool's login, settings and history (absent: none).
	ToolState *ToolStatePlan `json:"toolState,omitempty"`
	// Workspace says how the session sees the repository: its own copy (and branch), the
	// live work tree, or read-only.
	Workspace WorkspacePlan `json:"workspace"`
	// Egress is how the session reaches its egress gateway (network gateway only).
	Egress *EgressPlan `json:"egress,omitempty"`
	// SFTP is the SFTP server mounted in a workspace's container, for its editors.
	SFTP *HelperRef `json:"sftp,omitempty"`
	// IDE is the browser IDE a workspace serves (up --ide).
	IDE *IDEPlan `json:"ide,omitempty"`
	// Project is the project's tests or dev server the session runs (test, serve).
	Project *evidence.Project `json:"project,omitempty"`

	// policyHost is the host as the policy saw it: the hard-link check walks the same
	// protected paths.
	policyHost policy.Host
	// gitReadOnly are the git metadata each writable root's session must see read-only, and
	// gitGuard what its end is compared with (scanGit, one walk, at plan time).
	gitReadOnly map[string][]string
	gitGuard    gitGuard
	// EvidenceDir is the profile's evidence directory ("" for the default one).
	EvidenceDir string   `json:"evidenceDir,omitempty"`
	Notes       []string `json:"notes"`
	// Warnings are what the user must know before the session runs: a real run prints them.
	Warnings []string `json:"warnings"`
}

// WorkspacePlan is how the session sees the repository.
type WorkspacePlan struct {
	// Name is the long-lived workspace the plan is for (up); "" for a session.
	Name string `json:"name,omitempty"`
	// Mode is copy, direct or read-only.
	Mode string `json:"mode"`
	// Copy is where the copy will be and its branch (copy mode).
	Copy *repocopy.Copy `json:"copy,omitempty"`
	// Include are the ignored paths the copy shows.
	Include []string `json:"include,omitempty"`
	// Volume is the volume the repository's files travel to (volume mode); ReadOnly: it is
	// mounted read-only and nothing comes back.
	Volume   string `json:"volume,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// PostCreate and PostStart are the profile's lifecycle commands a workspace runs as joins
	// once created, and each time it comes up.
	PostCreate []profile.Command `json:"postCreate,omitempty"`
	PostStart  []profile.Command `json:"postStart,omitempty"`
}

// Workspace modes as the plan shows them.
const (
	WorkspaceCopy     = repocopy.ModeCopy
	WorkspaceDirect   = repocopy.ModeDirect
	WorkspaceReadOnly = "read-only"
	// WorkspaceVolume: the service is another machine's (ssh://, tcp://), whose paths are not
	// this host's: the repository's files travel to a volume, and the changes come back as a
	// patch.
	WorkspaceVolume = "volume"
)

type ProfileInfo struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
}

type ImageRef struct {
	Ref    string `json:"ref"`
	Digest string `json:"pinnedDigest,omitempty"`
}

type ToolPlan struct {
	Name   string `json:"name"`
	Binary string `json:"binary"`
}

// NewPlan applies the policy and, when nothing is refused, builds the container spec. A
// refusal returns the partial plan (for --dry-run output) and a *policy.RefusedError.
func NewPlan(p *profile.Profile, req SessionRequest, f Facts) (*Plan, error) {
	repo := req.Repo
	if repo == "" {
		repo = p.Spec.Workspace.Repo
	}
	if repo == "" {
		return nil, &InputError{Flag: "--repo", Err: fmt.Errorf("is required: the profile %s names no repository", p.Metadata.Name), Fix: "add --repo PATH, e.g. --repo ."}
	}
	repo, err := profile.ResolvePath(repo, f.Home, req.WorkDir)
	if err != nil {
		return nil, &InputError{Flag: "--repo", Err: err}
	}
	var optIns []string
	for _, a := range req.AllowProtected {
		r, err := profile.ResolvePath(a, f.Home, req.WorkDir)
		if err != nil {
			return nil, &InputError{Flag: "--allow-protected", Err: err}
		}
		optIns = append(optIns, r)
	}
	if err := checkAllowHosts(p, req.AllowHosts); err != nil {
		return nil, err
	}
	host := policy.Host{OS: f.OS, Home: f.Home, RuntimeDir: f.RuntimeDir, Extra: append([]policy.Protected{}, f.Own...)}
	if f.FS != nil {
		host.EvalSymlinks, host.Lstat, host.Stat = f.FS.EvalSymlinks, f.FS.Lstat, f.FS.Stat
	}
	if sock, ok := strings.CutPrefix(f.Connection.URI, "unix://"); ok {
		host.Extra = append(host.Extra, policy.Protected{Path: sock, What: "the Podman socket in use"})
	}
	dec := policy.Decide(p, policy.Request{Tool: req.Tool, Repo: repo, Secrets: req.Secrets, AllowProtected: optIns, AllowHosts: req.AllowHosts, Auth: req.Auth}, host)

	id := f.SessionID
	if id == "" {
		id = newSessionID(f.Now)
	}
	pl := &Plan{
		SchemaVersion:   PlanSchemaVersion,
		SessionID:       id,
		Profile:         ProfileInfo{Name: p.Metadata.Name, Source: p.Source, SHA256: p.SHA256},
		Connection:      f.Connection,
		Rootless:        f.Rootless,
		RootlessAssumed: f.RootlessAssumed,
		Image:           ImageRef{Ref: p.Spec.Image.Ref, Digest: p.Spec.Image.Digest},
		Repo:            dec.Mounts[0].Source,
		PassEnv:         []string{},
		Secrets:         []container.Secret{},
		SecretSources:   []policy.SecretDecision{},
		PolicyHash:      dec.Hash(),
		Decision:        dec,
		Keep:            req.Keep,
		Project:         req.Project,
		EvidenceDir:     p.Spec.Evidence.Dir,
		Notes:           []string{},
		Warnings:        []string{},
		policyHost:      host,
	}
	if err := dec.Err(); err != nil {
		return pl, err
	}
	command, tool, note := commandFor(p, req)
	pl.Tool = tool
	if note != "" {
		pl.Notes = append(pl.Notes, note)
	}
	if f.RootlessAssumed {
		pl.Notes = append(pl.Notes, fmt.Sprintf("the Podman service was not reachable: rootless=%v was assumed from the socket path and your uid; the real run asks the service", f.Rootless))
	}
	for _, e := range dec.Env {
		pl.PassEnv = append(pl.PassEnv, e.Name)
	}
	for _, s := range dec.Secrets {
		pl.SecretSources = append(pl.SecretSources, s)
		if len(s.Inject) == 0 { // an injected one reaches the container as a placeholder
			pl.Secrets = append(pl.Secrets, container.Secret{Name: secretName(id, s.Name), EnvVar: s.EnvVar})
		}
	}
	if len(pl.Secrets) > 0 && leaksEnvSecrets(f.ServerVersion) {
		pl.Notes = append(pl.Notes, fmt.Sprintf("Podman %s shows env secret values in 'podman inspect' of a running container (containers/podman#23788, fixed in 5.3); they are visible there to your own user until the session ends and the container is removed", f.ServerVersion))
	}
	if err := limitsEnforceable(p, f, pl); err != nil {
		return pl, err
	}
	user, userNote, cannotWrite := sessionUser(f, pl.Repo)
	switch {
	case cannotWrite:
		pl.Warnings = append(pl.Warnings, userNote)
	case userNote != "":
		pl.Notes = append(pl.Notes, userNote)
	}
	if req.Workspace != "" {
		if err := workspaceSecrets(pl); err != nil {
			return pl, err
		}
		pl.Workspace.Name = req.Workspace
		pl.Workspace.PostCreate, pl.Workspace.PostStart = p.Spec.Workspace.PostCreate, p.Spec.Workspace.PostStart
	}
	if err := planIDE(p, req, pl); err != nil {
		return pl, err
	}
	if err := planWorkspace(p, req, f, pl); err != nil {
		return pl, err
	}
	if roots := writableRoots(pl); len(roots) > 0 {
		pl.gitReadOnly, pl.gitGuard = scanGit(f, roots)
	}
	pl.Container = spec(p, pl, dec, f, command, user)
	planToolState(p, pl)
	if err := planEgress(p, f, pl); err != nil {
		return pl, err
	}
	planShippedHelper(f, pl)
	if f.OS == "windows" {
		pl.Notes = append(pl.Notes, "hard links in the mounts are not checked on Windows (it reports no link counts); on Linux and macOS a hard link to a protected file refuses the session")
	}
	switch {
	case pl.Helper != nil: // shipped with the egress gateway's sidecar
		pl.Notes = append(pl.Notes, "the tool runs through sourceos-helper (sha256:"+short(strings.TrimPrefix(pl.Helper.Digest, "sha256:"))+", shipped in volume "+pl.Helper.Volume+"), which first checks the container from inside and refuses (exit 3) if the server applied anything else")
	case f.Helper.Path != "":
		h := f.Helper
		pl.Helper = &h
		pl.Notes = append(pl.Notes, "the tool runs through sourceos-helper (sha256:"+short(strings.TrimPrefix(h.Digest, "sha256:"))+"), which first checks the container from inside — seccomp, capabilities, user, environment, mounts, devices, limits, namespaces — and refuses (exit 3) if the server applied anything else; the -o podman line leaves it out")
	default:
		pl.Notes = append(pl.Notes, "no in-container check: its helper cannot be mounted from this host into that service's containers (another machine, or a build without the helper); the server's inspect is still compared with the plan")
	}
	if pl.Workspace.Name != "" {
		return pl, planIdle(pl, f)
	}
	return pl, nil
}

// RuleLimitsUnenforceable refuses a session whose limits the service cannot apply.
const RuleLimitsUnenforceable = "limits-unenforceable"

// limitsEnforceable refuses rootless Podman on cgroups v1, which ignores every resource
// limit, unless the profile accepts best-effort limits; then the plan says so.
func limitsEnforceable(p *profile.Profile, f Facts, pl *Plan) error {
	if !f.Rootless || f.CgroupsVersion != "v1" {
		return nil
	}
	if p.Spec.Resources.Enforce == profile.EnforceBestEffort {
		pl.Notes = append(pl.Notes, "rootless Podman on cgroups v1 ignores resource limits: cpus, memory and pids are NOT enforced (the profile accepts best-effort limits)")
		return nil
	}
	return &policy.RefusedError{Refusals: []policy.Refusal{{
		Subject: "resources", Rule: RuleLimitsUnenforceable,
		Reason: "rootless Podman on cgroups v1 ignores cpu, memory and pids limits",
		Fix:    "boot with cgroups v2 (systemd.unified_cgroup_hierarchy=1), use the rootful service (--connection unix:///run/podman/podman.sock), or set spec.resources.enforce: best-effort",
	}}}
}

// leaksEnvSecrets reports whether a Podman server older than 5.3 (or of unknown version)
// puts env secret values into inspect's Config.Env once the container has started.
func leaksEnvSecrets(version string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major < 5 || major == 5 && minor < 3
}

// commandFor returns the argv, the tool and a note about its inner sandbox.
func commandFor(p *profile.Profile, req SessionRequest) ([]string, ToolPlan, string) {
	if req.Tool == tool.Shell {
		if len(req.Args) > 0 {
			return req.Args, ToolPlan{Name: tool.Shell, Binary: req.Args[0]}, ""
		}
		return []string{"/bin/sh", "-c", interactiveSh}, ToolPlan{Name: tool.Shell, Binary: "/bin/sh"}, ""
	}
	entry := p.Spec.Tools.Entry(req.Tool)
	def, builtin := tool.Builtin(req.Tool)
	switch {
	case builtin && entry != nil && len(entry.Command) > 0:
		return append(append([]string{}, entry.Command...), req.Args...), ToolPlan{Name: req.Tool, Binary: entry.Command[0]},
			"the profile overrides the built-in command of " + req.Tool + "; its own sandbox settings are the profile's responsibility"
	case builtin:
		argv := append(append([]string{def.Binary}, def.Args...), req.Args...)
		return argv, ToolPlan{Name: req.Tool, Binary: def.Binary}, def.Note
	}
	return append(append([]string{}, entry.Command...), req.Args...), ToolPlan{Name: req.Tool, Binary: entry.Command[0]}, ""
}

// sessionUser picks the uid:gid the container runs as, and says why when it is not the
// invoking user. Rootless: the invoking user, kept by keep-id. Rootful: never root — the
// invoking user, or when that is root, the repository's owner, or 1000 for a root-owned
// repository, which that user may then be unable to write (the note says so, with the fix).
func sessionUser(f Facts, repo string) (user, note string, cannotWrite bool) {
	switch {
	case f.Remote:
		user = fmt.Sprintf("%d:%d", fallbackUID, fallbackUID)
		return user, "the service is another machine's, where this host's uid means nothing: the session runs as " + user + " (never root), owning the workspace volume", false
	case f.Rootless || f.UID != 0:
		return fmt.Sprintf("%d:%d", f.UID, f.GID), "", false
	case f.RepoUID != 0:
		return fmt.Sprintf("%d:%d", f.RepoUID, f.RepoGID), fmt.Sprintf("rootful Podman and the invoking user is root: the session runs as the repository's owner %d:%d instead", f.RepoUID, f.RepoGID), false
	}
	user = fmt.Sprintf("%d:%d", fallbackUID, fallbackUID)
	note = fmt.Sprintf("rootful Podman, invoked as root on a root-owned repository: the session runs as %s (never root)", user)
	if problem := RepoWriteProblem(f.RepoUID, f.RepoGID, f.RepoMode); problem != "" {
		what := "cannot write to %s (owned by root, mode %v): the tool can read the repository but not change it"
		if !readableBy(fallbackUID, fallbackUID, f.RepoUID, f.RepoGID, f.RepoMode) {
			what = "can neither read nor write %s (owned by root, mode %v): the tool will not see the repository at all"
		}
		return user, fmt.Sprintf("the session runs as %s (never root), which "+what+"; to let it work there, give the repository to that user (chown -R %s %s) or run sourceosctl as the user who owns the work",
			user, repo, f.RepoMode, user, repo), true
	}
	return user, note, false
}

// RepoWriteProblem says why a rootful session started by root could not read or write the
// repository (owned by ownerUID:ownerGID with mode), or "" when it can do both.
func RepoWriteProblem(ownerUID, ownerGID int, mode fs.FileMode) string {
	if ownerUID != 0 || mode == 0 || writableBy(fallbackUID, fallbackUID, ownerUID, ownerGID, mode) {
		return ""
	}
	if !readableBy(fallbackUID, fallbackUID, ownerUID, ownerGID, mode) {
		return fmt.Sprintf("sessions started by root run as %d:%d (never root), which can neither read nor write this root-owned repository (mode %v)", fallbackUID, fallbackUID, mode)
	}
	return fmt.Sprintf("sessions started by root run as %d:%d (never root), which can read but not write this root-owned repository (mode %v)", fallbackUID, fallbackUID, mode)
}

// readableBy reports whether uid:gid may list and enter a directory owned by
// ownerUID:ownerGID with mode.
func readableBy(uid, gid, ownerUID, ownerGID int, mode fs.FileMode) bool {
	switch {
	case uid == ownerUID:
		return mode&0o500 == 0o500
	case gid == ownerGID:
		return mode&0o050 == 0o050
	}
	return mode&0o005 == 0o005
}

// writableBy reports whether uid:gid may create files in a directory owned by
// ownerUID:ownerGID with mode.
func writableBy(uid, gid, ownerUID, ownerGID int, mode fs.FileMode) bool {
	switch {
	case uid == ownerUID:
		return mode&0o300 == 0o300
	case gid == ownerGID:
		return mode&0o030 == 0o030
	}
	return mode&0o003 == 0o003
}

func spec(p *profile.Profile, pl *Plan, dec *policy.Decision, f Facts, command []string, user string) container.Spec {
	s := container.Spec{
		Name:    containerName(pl.Tool.Name, pl.SessionID),
		Image:   pl.Image.Ref,
		Command: command,
		WorkDir: p.Spec.Workspace.MountPath,
		User:    user,
		Env:     map[string]string{"HOME": container.ToolHome, "SOURCEOS_AGENT_SESSION": pl.SessionID},
		Secrets: pl.Secrets,
		Mounts:  []container.Mount{},
		Tmpfs: []container.Tmpfs{
			{Target: container.TmpDir, SizeBytes: tmpfsSize, Mode: "1777"},
			{Target: container.ToolHome, SizeBytes: tmpfsSize, Mode: "0700", Chown: true},
		},
		Labels: map[string]string{
			LabelManaged: "true",
			LabelProfile: p.Metadata.Name,
			LabelSession: pl.SessionID,
			LabelRepo:    pl.Repo,
			LabelTool:    pl.Tool.Name,
		},
		Network:         dec.Network,
		CapDrop:         dec.CapDrop,
		CapAdd:          dec.CapAdd,
		NoNewPrivileges: dec.NoNewPrivileges,
		ReadOnlyRoot:    dec.ReadOnlyRoot,
		Limits: container.Limits{CPUs: dec.Limits.CPUs, MemoryBytes: int64(dec.Limits.MemoryMiB) << 20, Pids: int64(dec.Limits.Pids),
			BestEffort: dec.Limits.Enforce == profile.EnforceBestEffort},
		Init:  true,
		TTY:   f.StdinTTY && f.StdoutTTY,
		Stdin: true,
	}
	for k, v := range p.Spec.Env { // the loader refuses sourceosctl's own names
		s.Env[k] = v
	}
	if f.Rootless && !f.Remote {
		s.UserNS = "keep-id"
	}
	if pl.Workspace.Name != "" {
		s.Name = WorkspaceContainer(pl.Workspace.Name)
		s.Labels[LabelWorkspace] = pl.Workspace.Name
		s.TTY, s.Stdin = false, false // nothing attaches to it: commands join it with exec
	}
	explicitSettings(&s, f)
	if s.TTY {
		term := f.Term
		if term == "" {
			term = "xterm-256color"
		}
		s.Env["TERM"] = term
	}
	for _, m := range dec.Mounts {
		source := MachinePath(f.OS, m.Source)
		switch {
		case m.Role == policy.RoleWorkspace && pl.Workspace.Mode == WorkspaceVolume:
			w := pl.Workspace
			s.Volumes = append(s.Volumes, container.Volume{Name: w.Volume, Target: m.Target, ReadOnly: w.ReadOnly, Chown: !w.ReadOnly})
		case m.Role == policy.RoleWorkspace && pl.Workspace.Copy != nil:
			c := pl.Workspace.Copy
			s.Overlays = append(s.Overlays, container.Overlay{Source: source, Target: m.Target, Upper: c.Upper(), Work: c.Work()})
		case !m.ReadOnly:
			// A live directory (direct mode, or a mount of the profile's), but never the git
			// metadata in it: each repository's configuration, hooks and refs — and a linked
			// worktree's or submodule's .git file, which says where they are — read-only, for
			// git on the host would run what they name.
			s.Mounts = append(s.Mounts, container.Mount{Source: source, Target: m.Target})
			for _, rel := range pl.gitReadOnly[m.Source] {
				s.Mounts = append(s.Mounts, container.Mount{Source: MachinePath(f.OS, filepath.Join(m.Source, filepath.FromSlash(rel))), Target: path.Join(m.Target, rel), ReadOnly: true})
			}
		default:
			s.Mounts = append(s.Mounts, container.Mount{Source: source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
	}
	return s
}

// Explicit settings: each one a server's own configuration (containers.conf) would otherwise
// choose for the container — and Podman 4.3's inspect does not show all it applied.
const (
	sessionHostname = "sourceos-agent"
	shmSize         = 64 << 20
	sessionUmask    = "0022"
)

// freshNamespaceSysctls are namespaced kernel settings and the values a new namespace starts
// with; a server's default_sysctls can change them, invisibly to inspect.
var freshNamespaceSysctls = map[string]string{"net.ipv4.ping_group_range": "1 0"}

func explicitSettings(s *container.Spec, f Facts) {
	s.Hostname, s.ShmSizeBytes, s.Umask, s.OOMScoreAdj = sessionHostname, shmSize, sessionUmask, 0
	s.SeccompProfile = container.DefaultSeccompProfile
	s.Namespaces = []string{"ipc", "uts", "pid"}
	if f.CgroupsVersion == "v2" {
		s.Namespaces = append(s.Namespaces, "cgroup")
	}
	s.Sysctls = map[string]string{}
	for k, v := range freshNamespaceSysctls {
		s.Sysctls[k] = v
	}
	// Open files and processes keep the service's limits: a value above the service's own
	// hard limit makes the runtime fail, and the client cannot know the service's. Verify and
	// the helper refuse any other limit a server's default_ulimits adds (rtprio, nice, …).
}

// MachinePath converts a host path into the path the Podman machine sees. The WSL machine
// mounts Windows drives under /mnt (C:\x\y → /mnt/c/x/y); macOS machines mount the shared
// volumes at the same paths, and Linux needs no conversion.
func MachinePath(goos, p string) string {
	if goos != "windows" {
		return p
	}
	p = strings.ReplaceAll(p, `\`, "/")
	if len(p) >= 2 && p[1] == ':' {
		rest := strings.TrimPrefix(p[2:], "/")
		return strings.TrimSuffix("/mnt/"+strings.ToLower(p[:1])+"/"+rest, "/")
	}
	return p
}

func containerName(tool, id string) string {
	return "sosctl-" + strings.ToLower(tool) + "-" + id
}

func secretName(session, name string) string {
	return "sosctl-" + session + "-" + name
}

// newSessionID sorts by time (to the microsecond) and never collides: UTC time plus 48
// random bits, which only decide the order of sessions started in the same microsecond.
func newSessionID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(now.UTC().Format("20060102t150405.000000z")) + "-" + hex.EncodeToString(b[:])
}

// mountSummary lists allowed mounts for messages, sorted by target.
func mountSummary(ms []container.Mount) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		out = append(out, fmt.Sprintf("%s -> %s (%s)", m.Source, m.Target, mode))
	}
	sort.Strings(out)
	return out
}

// planWorkspace decides how the session sees the repository. A copy needs a git repository's
// top level, a Podman service on this Linux host (the overlay's layers are local paths) and
// the helper (which collects the work); without them the session works on the live tree,
// and a warning says why.
func planWorkspace(p *profile.Profile, req SessionRequest, f Facts, pl *Plan) error {
	w := &pl.Workspace
	if req.Scratch {
		w.Mode = WorkspaceDirect
		pl.Notes = append(pl.Notes, "the workspace is a scratch directory sourceosctl made for this session; what the session leaves there is checked, not run, and the directory is removed")
		return nil
	}
	if f.Remote {
		return planVolume(p, req, f, pl)
	}
	mode := firstNonEmpty(p.Spec.Workspace.Mode, WorkspaceCopy)
	if req.Direct {
		mode = WorkspaceDirect
	}
	// A git directory mounted writable is its hooks and configuration, which git on the host
	// runs: a bare repository, a .git or a directory inside one is never a workspace or a
	// writable mount; nor is a work tree whose .git is a symbolic link (what it points to
	// could not be mounted read-only in its place).
	for _, m := range pl.Decision.Mounts {
		if m.ReadOnly || m.Source == "" {
			continue
		}
		what, fix := "--repo", "point --repo at a clone of it (git clone "+m.Source+")"
		if m.Role != policy.RoleWorkspace {
			what, fix = "spec.mounts", "mount it read-only (readOnly: true), or mount a clone of it"
		}
		if dir := insideGitDir(m.Source); dir != "" {
			return &InputError{Flag: what, Err: fmt.Errorf("%s is a git directory (a bare repository, or a .git), or inside one (%s), not a work tree: a session writing it could change the hooks and configuration git runs on this host", m.Source, dir), Fix: fix}
		}
		if st, err := os.Lstat(filepath.Join(m.Source, ".git")); err == nil && st.Mode()&os.ModeSymlink != 0 {
			return &InputError{Flag: what, Err: fmt.Errorf("%s/.git is a symbolic link: the repository it points to cannot be kept read-only for the session", m.Source), Fix: "mount it read-only (readOnly: true), or use a clone whose .git is a directory"}
		}
		if m.Role != policy.RoleWorkspace && m.Allowed {
			pl.Warnings = append(pl.Warnings, gitGuardWarning(m.Source))
		}
	}
	reason := ""
	switch {
	case p.Spec.Workspace.ReadOnly:
		mode = WorkspaceReadOnly
	case mode != WorkspaceCopy:
	case !repocopy.IsRepository(pl.Repo):
		reason = pl.Repo + " is not the top level of a git repository with its own .git directory"
	case !f.Local || f.OS != "linux":
		reason = "a copy needs a Podman service on this Linux host (its layers are local directories), and this one is " + orDash(f.Connection.URI)
	case f.Helper.Path == "":
		reason = "this sourceosctl was built without its container helper, which collects a copy's work (build it with make build)"
	case !f.GitCLI:
		reason = "git is not installed (a copy is made and brought back with it)"
	case f.StateDir == "":
		reason = "sourceosctl's state directory is unknown"
	}
	if reason != "" {
		mode = WorkspaceDirect
		if req.Branch != "" {
			return &InputError{Flag: "--branch", Err: fmt.Errorf("needs a copy, and %s", reason), Fix: "leave out --branch"}
		}
		pl.Warnings = append(pl.Warnings, "the session works on the live directory, not a copy: "+reason)
	}
	w.Mode = mode
	switch mode {
	case WorkspaceCopy:
		if req.Branch != "" {
			if err := repocopy.CheckBranch(req.Branch); err != nil {
				return &InputError{Flag: "--branch", Err: err, Fix: "use a name such as agent/fix-login"}
			}
		}
		w.Copy = repocopy.Plan(f.StateDir, pl.SessionID, pl.Repo, req.Branch)
		if req.Copy != nil {
			w.Copy = req.Copy
		}
		// The overlay's mount options list its layers separated by , and : — a layer's path
		// holding either would fail at the container's start, after the copy was made.
		for _, layer := range []struct{ flag, path, fix string }{
			{"--repo", pl.Repo, "rename the directory, or work on it directly with --direct"},
			{"", w.Copy.Dir, "set XDG_STATE_HOME to a directory whose path holds neither"},
		} {
			if strings.ContainsAny(layer.path, ",:") {
				return &InputError{Flag: layer.flag, Err: fmt.Errorf("%s holds a ',' or ':', which the copy's overlay cannot mount (they separate its layers)", layer.path), Fix: layer.fix}
			}
		}
		w.Include = append([]string{}, p.Spec.Workspace.Include...)
		hidden := "every ignored path is hidden (.env files, build output; a submodule's too), and so are repositories of their own inside it and your .git's records (reflogs, hooks, the stash)"
		if len(w.Include) > 0 {
			hidden = "ignored paths and repositories of their own inside it are hidden except " + strings.Join(w.Include, ", ") + ", and so are your .git's records (reflogs, hooks, the stash)"
		}
		pl.Notes = append(pl.Notes, fmt.Sprintf("the session works on its own copy (%s) on branch %s, from your HEAD and uncommitted changes; your work tree and .git are never written; %s; the work comes back through a collector container like this one, with no network and at least %d MiB of memory; afterwards: sourceosctl agent-machine diff %s, merge %s or discard %s",
			w.Copy.Dir, w.Copy.Branch, hidden, collectMemory>>20, pl.SessionID, pl.SessionID, pl.SessionID))
	case WorkspaceDirect:
		if req.Branch != "" && reason == "" {
			return &InputError{Flag: "--branch", Err: errors.New("names the branch of a copy, and this session is direct"), Fix: "leave out --branch or --direct"}
		}
		if reason == "" {
			pl.Warnings = append(pl.Warnings, "direct mode: the session writes your live work tree, and reads all of it — ignored files (.env) included. Its .git is read-only (configuration, hooks and refs cannot be changed) and sourceosctl reads git state afterwards with go-git, which runs nothing; but the session can leave files your tools act on — a nested repository with its own configuration, a .gitattributes naming a filter you configured — so review before running git in it")
		}
	case WorkspaceReadOnly:
		pl.Notes = append(pl.Notes, "the repository is mounted read-only (workspace.readOnly): no copy is needed")
	}
	return nil
}

// planVolume is the workspace of a session on another machine's service: paths there are
// that machine's, so nothing of this host is mounted. The repository's files — tracked and
// untracked, not ignored, not .git — travel to a volume of the session's, and what the
// session changes comes back as a patch (computed here, in Go, from the volume's files).
func planVolume(p *profile.Profile, req SessionRequest, f Facts, pl *Plan) error {
	where := "the service at " + f.Connection.URI + " runs on another machine"
	switch {
	case req.Workspace != "":
		return &InputError{Err: fmt.Errorf("a workspace (up) needs a service on this host or its Podman machine, and %s", where),
			Fix: "run sessions there with shell or run; workspaces on remote services are not supported yet"}
	case req.Direct || p.Spec.Workspace.Mode == WorkspaceDirect:
		return &InputError{Flag: "--direct", Err: fmt.Errorf("the live work tree is on this host, and %s", where),
			Fix: "leave out --direct (and workspace.mode: direct): the repository's files travel to a volume and the changes come back as a patch"}
	case req.Branch != "":
		return &InputError{Flag: "--branch", Err: fmt.Errorf("names a copy's branch, and %s: the changes come back as a patch", where), Fix: "leave out --branch"}
	case len(p.Spec.Mounts) > 0:
		var paths []string
		for _, m := range p.Spec.Mounts {
			paths = append(paths, m.Source)
		}
		return &InputError{Err: fmt.Errorf("spec.mounts names paths of this host (%s), and %s, which cannot mount them", strings.Join(paths, ", "), where),
			Fix: "use a profile without spec.mounts for remote sessions"}
	}
	w := &pl.Workspace
	w.Mode, w.ReadOnly = WorkspaceVolume, p.Spec.Workspace.ReadOnly
	w.Volume = "sosctl-repo-" + strings.ReplaceAll(pl.SessionID, ".", "-")
	back := "what the session changes comes back as a patch (sourceosctl computes it, runs nothing), to apply with git apply"
	if w.ReadOnly {
		back = "the volume is mounted read-only (workspace.readOnly): nothing comes back"
	}
	pl.Notes = append(pl.Notes, fmt.Sprintf("%s, whose paths are not this host's: the repository's files (tracked and untracked, not ignored ones, not .git) travel to the volume %s, removed afterwards; %s", where, w.Volume, back))
	if len(p.Spec.Workspace.Include) > 0 {
		pl.Notes = append(pl.Notes, "workspace.include is not used on a remote service: ignored paths stay on this host")
	}
	return nil
}

// insideGitDir is dir, or the nearest directory above it, that is a git directory (a bare
// repository or a .git: git runs its hooks and reads its configuration), or "".
func insideGitDir(dir string) string {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if filepath.Base(d) == ".git" || repocopy.IsGitDir(d) {
			return d
		}
		if parent := filepath.Dir(d); parent == d {
			return ""
		}
	}
}
