package agentmachine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

// weakening wraps the real engine and changes the spec it is asked to create, as a server
// that silently drops a setting would.
type weakening struct {
	*podman.Client
	weaken func(*container.Spec)
}

func (w weakening) Create(ctx context.Context, s container.Spec) (string, error) {
	w.weaken(&s)
	return w.Client.Create(ctx, s)
}

func TestIntegrationWeakenedSpecIsRefusedBeforeStart(t *testing.T) {
	env := podmantest.Need(t)
	client, err := podman.Connect(context.Background(), podman.Endpoint{URI: env.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	prof, err := profile.Parse("p.yaml", []byte("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: w}\nspec:\n  host: {os: linux}\n  image: {ref: "+podmantest.Image+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	weakenings := map[string]func(*container.Spec){
		"a capability added": func(s *container.Spec) { s.CapAdd = []string{"NET_RAW"} },
		"capabilities kept":  func(s *container.Spec) { s.CapDrop = []string{"MKNOD"} },
		"writable root":      func(s *container.Spec) { s.ReadOnlyRoot = false },
		"new privileges":     func(s *container.Spec) { s.NoNewPrivileges = false },
		"root user":          func(s *container.Spec) { s.User = "0:0" },
		"network":            func(s *container.Spec) { s.Network = "bridge" },
		"extra mount": func(s *container.Spec) {
			s.Mounts = append(s.Mounts, container.Mount{Source: "/etc", Target: "/host-etc"})
		},
		"memory limit":  func(s *container.Spec) { s.Limits.MemoryBytes *= 2 },
		"pids limit":    func(s *container.Spec) { s.Limits.Pids = 0 },
		"missing tmpfs": func(s *container.Spec) { s.Tmpfs = s.Tmpfs[:1] },
	}
	for name, weaken := range weakenings {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			home := t.TempDir()
			s := &agentmachine.Session{
				Connect: func(context.Context, machine.Ref) (agentmachine.Engine, agentmachine.Connection, error) {
					return weakening{client, weaken}, agentmachine.Connection{URI: env.URI, Source: "test"}, nil
				},
				Host:   agentmachine.Host{OS: "linux", Arch: "amd64", UID: 1000, GID: 1000, Home: home, WorkDir: repo},
				IO:     agentmachine.IO{In: &bytes.Buffer{}, Out: &out, ErrOut: &out},
				Getenv: func(string) string { return "" }, Environ: func() []string { return nil }, ReadFile: os.ReadFile,
				Now: time.Now, StopTimeout: time.Second, Dirs: agentmachine.Dirs{Config: home + "/cfg", State: home + "/state"},
				TempDir: home, Git: fingerprint.Git{}, Runner: podman.ExecRunner{}, LookPath: exec.LookPath,
			}
			res, err := s.Run(context.Background(), prof, agentmachine.SessionRequest{Tool: "shell", Repo: repo, Args: []string{"touch", "/workspace/started"}})
			pl := res.Plan
			var re *policy.RefusedError
			if !errors.As(err, &re) || re.Refusals[0].Rule != agentmachine.RuleServerWeakened {
				t.Fatalf("error = %v, want a %s refusal", err, agentmachine.RuleServerWeakened)
			}
			if _, err := os.Stat(repo + "/started"); err == nil {
				t.Error("the weakened container ran")
			}
			if names, _ := env.Podman("ps", "-a", "--filter", "label=dev.sourceos.agent-machine.session="+pl.SessionID, "--format", "{{.Names}}"); strings.TrimSpace(names) != "" {
				t.Errorf("weakened container left behind: %s", names)
			}
		})
	}
}
