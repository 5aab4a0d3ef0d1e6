package evidence

import (
	"strings"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
)

// SamplePredicate is a complete, schema-valid predicate of a session with the given id, for
// the tests and benchmarks of packages that write, log or report bundles.
func SamplePredicate(id string) *Predicate {
	code := 0
	commit := strings.Repeat("a", 40)
	return &Predicate{
		SchemaVersion: "1",
		Session: Session{ID: id, Outcome: "succeeded", ExitCode: &code, Ran: true,
			StartedOn: "2026-11-22T12:00:00Z", FinishedOn: "2026-11-22T12:00:01Z", TimesSelfAsserted: true, Container: "sosctl-shell-x"},
		Profile:    ProfileRef{Name: "t", Source: "p.yaml", SHA256: strings.Repeat("b", 64)},
		PolicyHash: "sha256:" + strings.Repeat("c", 64),
		Repo:       Repo{Path: "/home/u/dev/app", MountPath: "/workspace"},
		Image:      Image{Ref: "localhost/x:1", ID: strings.Repeat("d", 64), Digest: "sha256:" + strings.Repeat("e", 64)},
		Tool:       Tool{Name: "shell", Binary: "true", VersionAbsent: "the shell has no version"},
		Command:    []string{"true"}, User: "1000:1000",
		Mounts:       []Mount{{Source: "/home/u/dev/app", Target: "/workspace", Options: []string{"bind", "rw"}}},
		Network:      "none",
		Capabilities: Caps{Drop: []string{"ALL"}, Add: []string{}}, SecurityOptions: []string{"no-new-privileges"},
		Limits: Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 100, Enforced: true}, Secrets: []string{"api-key"},
		Host:        Host{OS: "linux", Arch: "amd64", Sourceosctl: "test", Rootless: true, Connection: "unix:///run/user/1000/podman/podman.sock"},
		Git:         Git{Before: fingerprint.GitState{Commit: commit, Reader: "git"}, After: fingerprint.GitState{Commit: commit, Reader: "git"}},
		Environment: MaskEnvironment([]string{"HOME=/home/u", "API_KEY=canary-value-1234", "TERM=xterm"}),
	}
}
