package agentmachine

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
)

// RecordInput is everything a session's evidence bundle is made of.
type RecordInput struct {
	Plan       *Plan
	Outcome    *Outcome
	RunErr     error
	GitBefore  fingerprint.GitState
	GitAfter   fingerprint.GitState
	Host       evidence.Host
	Environ    []string
	Diff       []byte // the work tree's diff when it changed
	Key        *evidence.Key
	Dir        string    // the evidence directory
	Tool       ToolFacts // measured in the image; zero when not measured
	ToolAbsent string    // why the tool's version was not measured
}

// maxDiff bounds the diff artifact; a larger diff is cut and says so.
const maxDiff = 32 << 20

// Record writes the session's signed evidence bundle and returns its directory. It is
// called for every session the policy allowed, whatever happened after.
func Record(in RecordInput) (string, error) {
	pl, out := in.Plan, in.Outcome
	s := pl.Container
	pred := &evidence.Predicate{
		SchemaVersion: "1",
		Session: evidence.Session{
			ID: pl.SessionID, Outcome: outcomeOf(out, in.RunErr), Ran: out.Ran, Interrupted: out.Interrupted, Cause: out.Cause,
			StartedOn: out.Started.UTC().Format(time.RFC3339Nano), FinishedOn: out.Ended.UTC().Format(time.RFC3339Nano),
			TimesSelfAsserted: true, Container: s.Name, ContainerID: out.ContainerID,
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
		Git:          evidence.Git{Before: in.GitBefore, After: in.GitAfter},
		Environment:  evidence.MaskEnvironment(in.Environ),
	}
	if out.Ran {
		code := out.ExitCode
		pred.Session.ExitCode = &code
	}
	if in.RunErr != nil {
		pred.Session.Error = in.RunErr.Error()
	}
	for _, m := range s.Mounts {
		opts := []string{"rbind", "rw"}
		if m.ReadOnly {
			opts[1] = "ro"
		}
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Options: opts})
	}
	for _, t := range s.Tmpfs {
		pred.Mounts = append(pred.Mounts, evidence.Mount{Source: "tmpfs", Target: t.Target, Options: t.Options()})
	}
	pred.SecurityOptions = securityOptions(s.NoNewPrivileges, s.ReadOnlyRoot, s.Init, s.UserNS)
	for _, sd := range pl.SecretSources {
		pred.Secrets = append(pred.Secrets, sd.Name)
	}
	artifacts, err := artifactsOf(in)
	if err != nil {
		return "", err
	}
	return evidence.Write(in.Dir, evidence.BundleName(pl.SessionID), pred, artifacts, in.Key)
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
