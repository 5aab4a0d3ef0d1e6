package cli

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

type fingerprintOptions struct {
	IO    *IOStreams
	Probe func(ctx context.Context, repo string) fingerprint.Probes

	Repo string
}

func newFingerprintCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &fingerprintOptions{IO: f.IO, Probe: func(ctx context.Context, repo string) fingerprint.Probes { return f.fingerprintProbes(g, repo) }}
	cmd := &cobra.Command{
		Use:   "fingerprint [--repo PATH]",
		Short: "Print this host's AgentMachineFingerprint as JSON",
		Long: `Print one JSON document (schema: schemas/agent-machine-fingerprint.schema.json) that
describes this host for evidence: OS, architecture and kernel, sourceosctl, the Podman
client and server (rootless or rootful, connection), the machine when there is one, git and
nix, the profile and its SHA-256, the policy hash of a shell session on the repository, and
the image's ref, ID and digest. It holds no secrets and no environment values; a fact that
cannot be gathered is reported absent, with the reason. Probes run concurrently.`,
		Example: `  sourceosctl agent-machine fingerprint
  sourceosctl agent-machine fingerprint --repo ~/dev/app > host.json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFingerprint(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Repo, "repo", "", "repository `PATH` whose session policy to hash (default: the profile's)")
	return cmd
}

const probeTimeout = 10 * time.Second

func runFingerprint(ctx context.Context, opts *fingerprintOptions) error {
	return writeJSON(opts.IO.Out, fingerprint.Gather(ctx, opts.Probe(ctx, opts.Repo)))
}

// fingerprintProbes are the fingerprint's probes on this host, each read-only.
func (f *Factory) fingerprintProbes(g *GlobalOptions, repo string) fingerprint.Probes {
	prof, profErr := f.LoadProfile(g.Profile)
	machine := agentmachine.MachineOf(prof)
	version := func(name string, args ...string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			if _, err := f.LookPath(name); err != nil {
				return "", errors.New(name + " is not installed")
			}
			cctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			out, err := f.Runner.Run(cctx, name, args...)
			return string(out), err
		}
	}
	probes := fingerprint.Probes{
		Now:          f.Now,
		Host:         fingerprint.HostFacts{OS: f.GOOS, Arch: f.GOARCH},
		Build:        fingerprint.Build{Version: f.Build.Version, Commit: f.Build.Commit, GoVersion: f.Build.GoVersion},
		Kernel:       version("uname", "-r"),
		PodmanClient: version("podman", "--version"),
		Git:          version("git", "--version"),
		Nix:          version("nix", "--version"),
		PodmanServer: func(ctx context.Context) fingerprint.Server {
			cctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			_, st, err := serverStatus(cctx, f, g.Connection, machine)
			if err != nil {
				return fingerprint.Server{Absent: firstLineOf(err)}
			}
			rootless := st.Rootless
			return fingerprint.Server{Version: st.ServerVersion, Rootless: &rootless, Connection: st.URI, Source: st.Source}
		},
		Image: func(ctx context.Context) fingerprint.Image {
			if prof == nil {
				return fingerprint.Image{Absent: "no valid profile"}
			}
			ref := prof.Spec.Image.Ref
			cctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			e, _, err := f.Connect(cctx, g.Connection, machine)
			if err != nil {
				return fingerprint.Image{Ref: ref, Absent: "the Podman API is not reachable"}
			}
			img, found, err := e.Image(cctx, ref)
			switch {
			case err != nil:
				return fingerprint.Image{Ref: ref, Absent: firstLineOf(err)}
			case !found:
				return fingerprint.Image{Ref: ref, Absent: "not present locally"}
			}
			return fingerprint.Image{Ref: ref, ID: img.ID, Digest: img.Digest}
		},
	}
	if prof != nil && usesMachine(f.GOOS, prof) {
		probes.Machine = func(ctx context.Context) *fingerprint.Machine {
			m, found, err := f.Machines().Get(ctx, machine.Name, machine.Provider)
			switch {
			case err != nil:
				return &fingerprint.Machine{Name: machine.Name, Absent: firstLineOf(err)}
			case !found:
				return &fingerprint.Machine{Name: machine.Name, Absent: "the machine does not exist"}
			}
			return &fingerprint.Machine{Name: m.Name, Provider: m.Provider, State: m.State, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB}
		}
	}
	probes.Profile, probes.Policy = f.profileFacts(repo, prof, profErr)
	return probes
}

// profileFacts reports the profile and the policy hash of a shell session on the repository,
// computed exactly as a dry run would.
func (f *Factory) profileFacts(repo string, prof *profile.Profile, profErr error) (fingerprint.Profile, fingerprint.Policy) {
	if profErr != nil {
		return fingerprint.Profile{Absent: firstLineOf(profErr)}, fingerprint.Policy{Absent: "no valid profile"}
	}
	p := fingerprint.Profile{Name: prof.Metadata.Name, Source: prof.Source, SHA256: prof.SHA256}
	home, _ := f.Home()
	wd, _ := f.WorkDir()
	plan, err := agentmachine.NewPlan(prof, agentmachine.SessionRequest{Tool: tool.Shell, Repo: repo, WorkDir: wd},
		agentmachine.Facts{OS: f.GOOS, Home: home, UID: f.UID, GID: f.GID, RuntimeDir: f.RuntimeDir(), Now: f.Now(),
			Own: agentmachine.OwnState(agentmachine.DirsFor(f.GOOS, f.Getenv, home), f.TempDir, f.UID, prof)})
	switch {
	case plan == nil && err != nil:
		return p, fingerprint.Policy{Absent: firstLineOf(err)}
	case err != nil:
		return p, fingerprint.Policy{Hash: plan.PolicyHash, Repo: plan.Repo, Absent: "the policy refuses this repository: " + firstLineOf(err)}
	}
	return p, fingerprint.Policy{Hash: plan.PolicyHash, Repo: plan.Repo}
}

func firstLineOf(err error) string {
	s := err.Error()
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
