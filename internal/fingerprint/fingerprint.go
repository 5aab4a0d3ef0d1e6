package fingerprint

import (
	"context"
	"strings"
	"sync"
	"time"
)

// SchemaVersion identifies the AgentMachineFingerprint document.
const SchemaVersion = "sourceos.dev/agent-machine-fingerprint/v1"

// Fingerprint describes a host for evidence and audits. It holds no secrets and no
// environment values; a fact that could not be gathered says why in its Absent field.
type Fingerprint struct {
	SchemaVersion string    `json:"schemaVersion"`
	Time          string    `json:"time"`
	Host          HostFacts `json:"host"`
	Sourceosctl   Build     `json:"sourceosctl"`
	PodmanClient  Version   `json:"podmanClient"`
	PodmanServer  Server    `json:"podmanServer"`
	Machine       *Machine  `json:"machine,omitempty"`
	Git           Version   `json:"git"`
	Nix           Version   `json:"nix"`
	Profile       Profile   `json:"profile"`
	Policy        Policy    `json:"policy"`
	Image         Image     `json:"image"`
}

type HostFacts struct {
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	Kernel string `json:"kernel,omitempty"`
}

type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// Version is a tool's version line, or why it is absent.
type Version struct {
	Version string `json:"version,omitempty"`
	Absent  string `json:"absent,omitempty"`
}

type Server struct {
	Version    string `json:"version,omitempty"`
	Rootless   *bool  `json:"rootless,omitempty"`
	Connection string `json:"connection,omitempty"`
	Source     string `json:"source,omitempty"`
	Absent     string `json:"absent,omitempty"`
}

type Machine struct {
	Name      string `json:"name"`
	Provider  string `json:"provider,omitempty"`
	State     string `json:"state,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	Absent    string `json:"absent,omitempty"`
}

type Profile struct {
	Name   string `json:"name,omitempty"`
	Source string `json:"source,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Absent string `json:"absent,omitempty"`
}

type Policy struct {
	Hash   string `json:"hash,omitempty"`
	Repo   string `json:"repo,omitempty"`
	Absent string `json:"absent,omitempty"`
}

type Image struct {
	Ref    string `json:"ref,omitempty"`
	ID     string `json:"id,omitempty"`
	Digest string `json:"digest,omitempty"`
	Absent string `json:"absent,omitempty"`
}

// Probes gather one fact each; Gather runs them concurrently.
type Probes struct {
	Now          func() time.Time
	Host         HostFacts
	Build        Build
	Kernel       func(ctx context.Context) (string, error)
	PodmanClient func(ctx context.Context) (string, error)
	PodmanServer func(ctx context.Context) Server
	Machine      func(ctx context.Context) *Machine // nil when no machine is in use
	Git          func(ctx context.Context) (string, error)
	Nix          func(ctx context.Context) (string, error)
	Profile      Profile
	Policy       Policy
	Image        func(ctx context.Context) Image
}

// Gather runs every probe concurrently and assembles the fingerprint.
func Gather(ctx context.Context, p Probes) Fingerprint {
	fp := Fingerprint{SchemaVersion: SchemaVersion, Time: p.Now().UTC().Format(time.RFC3339), Host: p.Host, Sourceosctl: p.Build, Profile: p.Profile, Policy: p.Policy}
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	version := func(probe func(context.Context) (string, error), into *Version) {
		run(func() {
			v, err := probe(ctx)
			if err != nil {
				into.Absent = firstLine(err.Error())
				return
			}
			into.Version = strings.TrimSpace(v)
		})
	}
	run(func() {
		if k, err := p.Kernel(ctx); err == nil {
			fp.Host.Kernel = strings.TrimSpace(k)
		}
	})
	version(p.PodmanClient, &fp.PodmanClient)
	version(p.Git, &fp.Git)
	version(p.Nix, &fp.Nix)
	run(func() { fp.PodmanServer = p.PodmanServer(ctx) })
	run(func() { fp.Image = p.Image(ctx) })
	if p.Machine != nil {
		run(func() { fp.Machine = p.Machine(ctx) })
	}
	wg.Wait()
	return fp
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
