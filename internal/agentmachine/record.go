package agentmachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
)

// record writes the session's signed bundle. A profile's own evidence directory that cannot
// take it (read-only, full, gone) falls back to the default one, and the default one to a
// private directory in the system's temporary directory; the user is told where it went.
func (r *sessionRun) record(in RecordInput) (string, error) {
	dirs := r.evidenceDirs()
	var errs []error
	for i, dir := range dirs {
		if i > 0 {
			fmt.Fprintf(r.IO.ErrOut, "! cannot write evidence to %s (%v); writing it to %s instead\n", dirs[i-1], cause.Root(errs[i-1]), dir)
		}
		in.Dir = dir
		bundle, digest, err := r.writeRecord(in, i == len(dirs)-1)
		if err == nil {
			r.logBundle(bundle, digest, in.Key)
			if !r.Quiet {
				fmt.Fprintf(r.IO.ErrOut, "evidence: %s\n", bundle)
			}
			return bundle, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("%w: %v", ErrNoEvidence, errs[len(errs)-1])
}

// logBundle appends the written bundle to its evidence directory's session log. The bundle
// stands on its own when the log cannot take it: the user is told, and `evidence log verify`
// names the bundle as not in the log.
func (r *sessionRun) logBundle(bundle string, digest []byte, key *evidence.Key) {
	a, err := evidencelog.AppendWritten(bundle, digest, key.Signer)
	switch {
	case err != nil:
		fmt.Fprintf(r.IO.ErrOut, "! the bundle %s is not in the session log of %s: %v\n", filepath.Base(bundle), filepath.Dir(bundle), err)
	case a.Adopted > 0:
		fmt.Fprintf(r.IO.ErrOut, "Started the session log of %s with its %d earlier bundles (see `evidence log --help`)\n", filepath.Dir(bundle), a.Adopted)
	}
}

// recordInput is what the record is made of: the session as it stands when its tool has
// finished and what followed was collected. The outcome is copied: clean-ups run while the
// record is written.
func (r *sessionRun) recordInput(runErr error) RecordInput {
	r.out.Ended = r.Now().UTC()
	r.event("recorded; clean-up follows: %s", r.cleanUpSummary())
	<-r.gitAfterDone
	out := *r.out
	out.Events = append([]Event(nil), r.out.Events...)
	return RecordInput{
		Plan: r.plan, Outcome: &out, RunErr: runErr, GitBefore: r.gitBefore, GitAfter: r.gitAfter, Diff: r.diff,
		Workspace: r.workspaceRecord(), Patch: r.patch,
		Host: evidence.Host{OS: r.Host.OS, Arch: r.Host.Arch, Sourceosctl: r.Version,
			PodmanServer: r.facts.ServerVersion, Rootless: r.facts.Rootless, Connection: r.plan.Connection.URI,
			GitVersion: r.host.git, PodmanClient: r.host.podmanClient, Kernel: r.host.kernel, CgroupVersion: r.facts.CgroupsVersion},
		Environ: r.Environ(), Key: r.key, Tool: r.tool, ToolAbsent: r.toolAbsent,
		Egress: r.egressEvents(), WorkspaceAction: r.workspaceAction(),
	}
}

// egressEvents are the gateway's records for the evidence (none when it never started).
func (r *sessionRun) egressEvents() *EgressEvents {
	if r.plan.Egress == nil || r.ws != nil && r.ws.action != actionDown {
		return nil // a workspace's gateway keeps running: its down records what it saw
	}
	ev := &EgressEvents{}
	if sg := r.gw; sg != nil {
		ev.Events, ev.Summary, ev.Unaccounted = sg.events, sg.summary, sg.err
	}
	return ev
}

// EgressEvents are the gateway's connection attempts and what it could not account for.
type EgressEvents struct {
	Events      []egress.Event // itemized
	Summary     egress.Summary // every attempt, counted
	Unaccounted error
}

// cleanUpSummary says what the clean-ups will remove.
func (r *sessionRun) cleanUpSummary() string {
	var parts []string
	if r.box != nil {
		if r.plan.Keep && !r.weakened {
			parts = append(parts, "the container is kept (--keep)")
		} else {
			parts = append(parts, "the container is removed")
		}
	}
	if n := len(r.madeSecrets); n > 0 {
		parts = append(parts, fmt.Sprintf("%d ephemeral secret(s) removed", n))
	}
	if len(parts) == 0 {
		return "nothing to remove"
	}
	return strings.Join(parts, ", ")
}

// evidenceDirs are where the bundle may go, in order: the profile's directory (if it names
// one), the default one, and a private directory in the temporary directory.
func (r *sessionRun) evidenceDirs() []string {
	def := r.Dirs.EvidenceDir()
	var dirs []string
	if own := r.plan.EvidenceDir; own != "" && own != def {
		dirs = append(dirs, own)
	}
	return append(dirs, def, filepath.Join(r.TempDir, fmt.Sprintf("sourceosctl-evidence-%d", r.Host.UID)))
}

func (r *sessionRun) writeRecord(in RecordInput, shared bool) (string, []byte, error) {
	if shared {
		// A directory in a shared temporary directory could have been planted by another
		// user: write only into one that is ours alone.
		if err := privateDir(in.Dir, r.Host.UID); err != nil {
			return "", nil, err
		}
	}
	return Record(in)
}

// privateDir makes sure dir is a directory of ours that nobody else can read or replace.
func privateDir(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	owner, _ := PathOwner(dir)
	if !st.IsDir() || st.Mode().Perm()&0o077 != 0 || (uid >= 0 && owner != uid) {
		return fmt.Errorf("%s is not a private directory of yours (mode %v, owner %d): refusing to write evidence there", dir, st.Mode(), owner)
	}
	return nil
}

// hostTools are the host's tool versions, for the record.
type hostTools struct{ git, podmanClient, kernel string }

// hostToolTimeout bounds asking a host tool its version.
const hostToolTimeout = 10 * time.Second

// gatherHostTools reads the kernel release and asks git and podman their versions. A
// program's version changes only with its binary, and starting the podman CLI costs more CPU
// than the rest of a session's own work: versions are cached by the binary's path, size and
// modification time, and a tool is asked only when its binary changed.
func (r *sessionRun) gatherHostTools(ctx context.Context) hostTools {
	ctx, cancel := context.WithTimeout(ctx, hostToolTimeout)
	defer cancel()
	cache := toolVersionCache{path: r.Dirs.HostToolCache(), lookPath: r.LookPath}
	cache.load()
	version := func(name string) string {
		return cache.version(name, func() string {
			out, err := r.Runner.Run(ctx, name, "--version")
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(out))
		})
	}
	h := hostTools{kernel: fingerprint.KernelRelease()}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.git = version("git") }()
	go func() { defer wg.Done(); h.podmanClient = version("podman") }()
	wg.Wait()
	cache.save()
	return h
}

// toolVersionCache maps a program's binary (path, size, modification time) to its version.
type toolVersionCache struct {
	path     string
	lookPath func(string) (string, error)
	mu       sync.Mutex
	entries  map[string]string
	changed  bool
}

func (c *toolVersionCache) load() {
	c.entries = map[string]string{}
	if raw, err := os.ReadFile(c.path); err == nil {
		_ = json.Unmarshal(raw, &c.entries)
	}
}

// version returns the cached version of the program name, or asks it (ask) and keeps the
// answer. A program that is not installed has no version.
func (c *toolVersionCache) version(name string, ask func() string) string {
	bin, err := c.lookPath(name)
	if err != nil {
		return ""
	}
	st, err := os.Stat(bin)
	if err != nil {
		return ""
	}
	key := fmt.Sprintf("%s %d %d", bin, st.Size(), st.ModTime().UnixNano())
	c.mu.Lock()
	v, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = ask()
	if v != "" {
		c.mu.Lock()
		c.entries[key], c.changed = v, true
		c.mu.Unlock()
	}
	return v
}

func (c *toolVersionCache) save() {
	if !c.changed {
		return
	}
	if raw, err := json.MarshalIndent(c.entries, "", "  "); err == nil {
		_ = atomicfile.Write(c.path, raw, 0o600, atomicfile.Options{})
	}
}

// HostToolCache is where host tools' versions are kept.
func (d Dirs) HostToolCache() string { return filepath.Join(d.State, "host-tools.json") }

// RecordInput is everything a session's evidence bundle is made of.
type RecordInput struct {
	Plan    *Plan
	Outcome *Outcome
	RunErr  error
	// Workspace is how the session saw the repository; Patch the diff of its branch.
	Workspace  *evidence.Workspace
	Patch      []byte
	GitBefore  fingerprint.GitState
	GitAfter   fingerprint.GitState
	Host       evidence.Host
	Environ    []string
	Diff       []byte // the work tree's diff when it changed
	Key        *evidence.Key
	Dir        string    // the evidence directory
	Tool       ToolFacts // measured in the image; zero when not measured
	ToolAbsent string    // why the tool's version was not measured
	// Egress is the gateway's account (network gateway only).
	Egress *EgressEvents
	// WorkspaceAction is set for a workspace's up, join or down.
	WorkspaceAction *evidence.WorkspaceAction
}

// maxDiff bounds the diff artifact; a larger diff is cut and says so.
const maxDiff = 32 << 20

// Record writes the session's signed evidence bundle and returns its directory and the SHA-256 of
// its bundle file. It is called for every session the policy allowed, whatever happened after.
func Record(in RecordInput) (bundle string, bundleSHA256 []byte, err error) {
	pl, out := in.Plan, in.Outcome
	s := pl.Container
	pred := &evidence.Predicate{
		SchemaVersion: "1",
		Session: evidence.Session{
			ID: pl.SessionID, Outcome: outcomeOf(out, in.RunErr), Ran: out.Ran, Interrupted: out.Interrupted, Cause: out.Cause,
			StartedOn: out.Started.UTC().Format(time.RFC3339Nano), FinishedOn: out.Ended.UTC().Format(time.RFC3339Nano),
			TimesSelfAsserted: true, Container: s.Name, ContainerID: out.ContainerID, Workspace: in.WorkspaceAction, Project: pl.Project,
		},
		Profile:    evidence.ProfileRef{Name: pl.Profile.Name, Source: pl.Profile.Source, SHA256: pl.Profile.SHA256},
		PolicyHash: pl.PolicyHash,
		Repo:       evidence.Repo{Path: pl.Repo, MountPath: s.WorkDir},
		Image:      evidence.Image{Ref: pl.Image.Ref, ID: out.Image.ID, Digest: out.Image.Digest, PinnedDigest: pl.Image.Digest},
		Tool: evidence.Tool{Name: pl.Tool.Name, Binary: pl.Tool.Binary, Version: in.Tool.Version,
			BinaryDigest: in.Tool.BinaryDigest, VersionAbsent: in.ToolAbsent},
		Command:      s.Command,
		User:         s.User,
		Network:      s.Network,
		Capabilities: evidence.Caps{Drop: s.CapDrop, Add: s.CapAdd},
		Limits:       evidence.Limits{CPUs: s.Limits.CPUs, MemoryBytes: s.Limits.MemoryBytes, Pids: s.Limits.Pids, Enforced: !s.Limits.BestEffort},
		Secrets:      []string{},
		Host:         in.Host,
		Git:          evidence.Git{Before: in.GitBefore, After: in.GitAfter, Workspace: in.Workspace},
		Environment:  evidence.MaskEnvironment(in.Environ),
	}
	if out.Ran {
		code := out.ExitCode
		pred.Session.ExitCode = &code
	}
	if in.RunErr != nil {
		pred.Session.Error = in.RunErr.Error()
	}
	// The copy's overlay first: in copy mode it is the workspace.
	for _, o := range s.Overlays {
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: o.Source, Target: o.Target, Options: append([]string{"overlay"}, o.Options()...)})
	}
	for _, m := range s.Mounts {
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Options: m.Options()})
	}
	for _, v := range s.Volumes {
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: "volume:" + v.Name, Target: v.Target, ReadOnly: v.ReadOnly, Options: v.Options()})
	}
	for _, t := range s.Tmpfs {
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: "tmpfs", Target: t.Target, Options: t.Options()})
	}
	pred.SecurityOptions = securityOptions(s.NoNewPrivileges, s.ReadOnlyRoot, s.Init, s.UserNS)
	if s.SeccompProfile != "" {
		pred.SecurityOptions = append(pred.SecurityOptions, "seccomp="+s.SeccompProfile)
	}
	for _, ns := range s.Namespaces {
		pred.SecurityOptions = append(pred.SecurityOptions, ns+"ns=private")
	}
	checks := out.Checks
	pred.Checks = &checks
	for _, sd := range pl.SecretSources {
		pred.Secrets = append(pred.Secrets, sd.Name)
	}
	artifacts, err := artifactsOf(in)
	if err != nil {
		return "", nil, err
	}
	if in.Egress != nil {
		rec, log := egressRecord(pl, in.Egress)
		pred.Egress = rec
		artifacts = append(artifacts, evidence.Artifact{Name: EgressLog, Data: log})
	}
	return evidence.WriteBundle(in.Dir, evidence.BundleName(pl.SessionID), pred, artifacts, in.Key)
}

func outcomeOf(out *Outcome, runErr error) string {
	switch {
	case out.Interrupted:
		return "interrupted"
	case runErr != nil:
		return "failed"
	case out.ExitCode != 0:
		return "tool-failed"
	}
	return "succeeded"
}

func securityOptions(nnp, roRoot, init bool, userns string) []string {
	var opts []string
	if nnp {
		opts = append(opts, "no-new-privileges")
	}
	if roRoot {
		opts = append(opts, "read-only-root")
	}
	if init {
		opts = append(opts, "init")
	}
	if userns != "" {
		opts = append(opts, "userns="+userns)
	}
	return opts
}

func artifactsOf(in RecordInput) ([]evidence.Artifact, error) {
	var log strings.Builder
	for _, e := range in.Outcome.Events {
		fmt.Fprintf(&log, "%s %s\n", e.Time.Format(time.RFC3339Nano), e.What)
	}
	decision, err := json.MarshalIndent(in.Plan.Decision, "", "  ")
	if err != nil {
		return nil, err
	}
	plan, err := json.MarshalIndent(in.Plan, "", "  ")
	if err != nil {
		return nil, err
	}
	arts := []evidence.Artifact{
		{Name: "session.log", Data: []byte(log.String())},
		{Name: "policy.json", Data: append(decision, '\n')},
		{Name: "plan.json", Data: append(plan, '\n')},
	}
	if len(in.Outcome.Inspect) > 0 {
		arts = append(arts, evidence.Artifact{Name: "container-inspect.json", Data: maskInspect(in.Outcome.Inspect, in.Plan)})
	}
	if len(in.Patch) > 0 {
		name := "branch.patch"
		if in.Plan.Workspace.Mode == WorkspaceVolume {
			name = "workspace.patch"
		}
		arts = append(arts, evidence.Artifact{Name: name, Data: in.Patch})
	}
	if len(in.Diff) > 0 {
		diff := in.Diff
		if len(diff) > maxDiff {
			diff = append(diff[:maxDiff:maxDiff], []byte(fmt.Sprintf("\n[sourceosctl: diff cut at %d bytes of %d]\n", maxDiff, len(in.Diff)))...)
		}
		arts = append(arts, evidence.Artifact{Name: "worktree.diff", Data: diff})
	}
	return arts, nil
}

// maskInspect replaces the value of any environment entry named like an admitted secret's
// variable. The inspection is taken before start, when Podman has not yet put secret
// values there; this is the second wall, for servers that do.
func maskInspect(raw []byte, pl *Plan) []byte {
	for _, s := range pl.Container.Secrets {
		re := regexp.MustCompile(`"` + regexp.QuoteMeta(s.EnvVar) + `=(?:[^"\\]|\\.)*"`)
		raw = re.ReplaceAll(raw, []byte(`"`+s.EnvVar+`=***"`))
	}
	return raw
}

// ErrNoEvidence wraps a failure to write a session's bundle.
var ErrNoEvidence = errors.New("the session's evidence bundle could not be written")

// workspaceRecord is the evidence's account of how the session saw the repository.
func (r *sessionRun) workspaceRecord() *evidence.Workspace {
	w := &evidence.Workspace{Mode: r.plan.Workspace.Mode}
	if r.volumeErr != nil {
		w.Error = r.volumeErr.Error()
	}
	c := r.plan.Workspace.Copy
	if c == nil {
		return w
	}
	w.Branch, w.Head, w.Snapshot, w.Base, w.Masked, w.Included = c.Branch, c.Head, c.Snapshot, c.Base, c.Masked, c.Included
	if res := c.Result; res != nil {
		w.Result = &evidence.BranchResult{Changed: res.Changed, Head: res.Head, Commits: res.Commits, Leftover: res.Leftover, Stat: res.Stat}
	}
	switch {
	case r.copyErr != nil:
		w.Error = r.copyErr.Error()
	case r.copyCollectErr != nil:
		w.Error = r.copyCollectErr.Error()
	}
	return w
}
