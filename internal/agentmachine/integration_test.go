package agentmachine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

var env *podmantest.Env

func TestMain(m *testing.M) {
	podmantest.Main(m, func(e *podmantest.Env) { env = e })
}

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
	if env == nil {
		t.Skip("podman is not installed (CI=true makes this a failure)")
	}
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
			pl, err := agentmachine.NewPlan(prof, agentmachine.SessionRequest{Tool: "shell", Repo: repo, Args: []string{"touch", "/workspace/started"}},
				agentmachine.Facts{OS: "linux", Home: "/nonexistent-home", UID: 1000, GID: 1000, Rootless: false, Now: time.Now(), Connection: agentmachine.Connection{URI: env.URI}})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			s := &agentmachine.Session{Engine: weakening{client, weaken}, In: &bytes.Buffer{}, Out: &out, ErrOut: &out,
				Getenv: func(string) string { return "" }, ReadFile: os.ReadFile, Now: time.Now, StopTimeout: time.Second}
			_, err = s.Run(context.Background(), pl)
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
