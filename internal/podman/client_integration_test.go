package podman_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// connect reaches the harness's service through the product's own resolution (CONTAINER_HOST).
func connect(t *testing.T, e *podmantest.Env) *podman.Client {
	t.Helper()
	ctx := context.Background()
	r := podman.Resolver{
		Getenv: func(k string) string {
			if k == "CONTAINER_HOST" {
				return e.URI
			}
			return ""
		},
		GOOS: "linux", UID: os.Getuid(), Stat: os.Stat, Runner: podman.ExecRunner{},
	}
	ep, err := r.Resolve(ctx, "", machine.Ref{})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if ep.Source != "CONTAINER_HOST" {
		t.Fatalf("endpoint source = %q, want CONTAINER_HOST", ep.Source)
	}
	c, err := podman.Connect(ctx, ep)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

func TestIntegrationHarnessRunsARealContainer(t *testing.T) {
	e := podmantest.Need(t)
	c := connect(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || info.Runtime != "runc" {
		t.Fatalf("server info = %+v, want a version and the harness's runc runtime", info)
	}
	img, found, err := c.Image(ctx, podmantest.Image)
	if err != nil || !found {
		t.Fatalf("image: found %v, %v", found, err)
	}
	if len(img.ID) != 64 {
		t.Fatalf("image ID = %q, want 64 hex digits", img.ID)
	}

	spec := container.Spec{
		Name:    "sosctl-harness-" + time.Now().Format("150405.000000"),
		Image:   podmantest.Image,
		Command: []string{"codex", "hello", "world"},
		WorkDir: "/",
		User:    "1000:1000",
		Env:     map[string]string{"HOME": "/home/agent"},
		Labels:  map[string]string{"dev.sourceos.agent-machine.test": "harness"},
		Network: "none", CapDrop: []string{"ALL"}, NoNewPrivileges: true, ReadOnlyRoot: true,
		Tmpfs:  []container.Tmpfs{{Target: "/tmp", SizeBytes: 16 << 20, Mode: "1777"}},
		Limits: container.Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 128},
	}
	spec.Name = strings.ReplaceAll(spec.Name, ".", "-")
	id, err := c.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx, id)

	var out, errOut bytes.Buffer
	ready := make(chan bool, 1)
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(ctx, id, nil, &out, &errOut, ready) }()
	<-ready
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := <-attached; err != nil {
		t.Fatal(err)
	}
	code, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("exit code = %d, stderr %q", code, errOut.String())
	}
	for _, want := range []string{"tool=codex", "argv=hello world", "uid=1000 gid=1000", "HOME"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stub output lacks %q:\n%s", want, out.String())
		}
	}
	if err := c.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Podman("ps", "-a", "--filter", "name="+spec.Name, "--format", "{{.ID}}"); strings.TrimSpace(got) != "" {
		t.Fatalf("container still present after Remove: %s", got)
	}
}

// TestIntegrationLocalFactsAgreeWithInfo: the cheap local answers equal the service's own.
func TestIntegrationLocalFactsAgreeWithInfo(t *testing.T) {
	e := podmantest.Need(t)
	c := connect(t, e)
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rootless, cgroups, ok := podman.LocalFacts(c.Endpoint())
	if !ok || rootless != info.Rootless || cgroups != info.Cgroups || c.ServerVersion() != info.Version {
		t.Fatalf("local: rootless %v cgroups %s version %s (ok %v); info: %+v", rootless, cgroups, c.ServerVersion(), ok, info)
	}
}
