package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// hostCACerts are the extra CA certificates this host trusts (a TLS-inspecting proxy's, say):
// the build needs them to reach the npm registry from where the host does.
func hostCACerts() []string {
	certs, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	return certs
}

// TestIntegrationImageBuildFromScratch builds the default image on a clean Podman storage
// (debootstrap from the host's mirror, npm for the tools), then runs the real claude and codex
// in governed sessions — their versions, and a turn each against a fake API through the egress
// gateway — and curl, git, npm and Python through the gateway in a stack image. It takes
// minutes; CI runs it once per run.
func TestIntegrationImageBuildFromScratch(t *testing.T) {
	e := podmantest.Need(t)
	if os.Getenv("CI") != "true" && os.Getenv("SOURCEOSCTL_IMAGE_BUILD_TEST") != "1" {
		t.Skip("builds the real workspace image (minutes, needs root, debootstrap, Debian and npm): set SOURCEOSCTL_IMAGE_BUILD_TEST=1 (CI always runs it)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the debootstrap build needs root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Fatal("debootstrap is not installed (scripts/install-deps.sh installs it)")
	}
	w := newWorkspace(t, e, "")
	build := func(extra ...string) (int, string, string) {
		args := []string{"agent-machine", "image", "build", "-o", "json"}
		for _, c := range hostCACerts() {
			args = append(args, "--ca-cert", c)
		}
		return runCLI(t, e, w, append(args, extra...)...)
	}
	actions := func(stdout string) []string {
		var plan image.BuildPlan
		if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
			t.Fatalf("build -o json: %v\n%s", err, stdout)
		}
		var out []string
		for _, st := range plan.Steps {
			out = append(out, st.Action)
		}
		return out
	}

	// Dry run on storage without the workspace image (the harness's test image, and the
	// collector's when a copy-mode test ran first): every stage would be built, nothing is.
	imagesBefore, _ := e.Podman("images", "-q")
	code, stdout, stderr := build("--dry-run")
	if code != 0 || strings.Join(actions(stdout), ",") != "build,build,build" {
		t.Fatalf("dry run: exit %d, actions %v, stderr:\n%s", code, stdout, stderr)
	}
	if out, _ := e.Podman("images", "-q"); out != imagesBefore {
		t.Fatalf("the dry run created images:\n%s\nbefore it:\n%s", out, imagesBefore)
	}

	start := time.Now()
	code, stdout, stderr = build()
	t.Logf("image build from scratch took %s", time.Since(start).Round(time.Second))
	if code != 0 {
		t.Fatalf("image build: exit %d, stderr (last 3000 bytes):\n%s", code, tail(stderr, 3000))
	}
	if got := strings.Join(actions(stdout), ","); got != "built,built,built" {
		t.Errorf("actions = %s", got)
	}
	if out, _ := e.Podman("images", "--format", "{{.Repository}}:{{.Tag}}"); strings.Contains(out, "build-tmp") {
		t.Errorf("temporary build names left behind:\n%s", out)
	}

	// The real tools, in governed sessions on the embedded default profile.
	cat := image.DefaultCatalog()
	for tool, want := range map[string]string{"codex": "codex-cli " + cat.Tools["codex"], "claude-code": cat.Tools["claude-code"] + " (Claude Code)"} {
		code, stdout, stderr := runCLI(t, e, w, "agent-machine", "run", "--tool", tool, "--repo", w.repo, "--", "--version")
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("run --tool %s -- --version: exit %d, stdout %q, stderr:\n%s", tool, code, stdout, stderr)
		}
	}
	checkRealToolsThroughTheGateway(t, e, w, image.DefaultRef)
	code, stdout, stderr = runCLI(t, e, w, "agent-machine", "shell", "--repo", w.repo, "--", "sh", "-c", "id -un; git --version; ls -ld /workspace")
	if code != 0 || !strings.Contains(stdout, "git version") {
		t.Errorf("shell: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}

	// Nothing changed: a second build reuses every stage.
	code, stdout, stderr = build()
	if code != 0 || strings.Join(actions(stdout), ",") != "reuse,reuse,reuse" {
		t.Fatalf("second build: exit %d, %s\n%s", code, stdout, tail(stderr, 2000))
	}

	// A stack overlay builds one more stage on top; the runtime is there.
	code, stdout, stderr = build("--stack", "python")
	if code != 0 || strings.Join(actions(stdout), ",") != "reuse,reuse,reuse,built" {
		t.Fatalf("--stack python: exit %d, %s\n%s", code, stdout, tail(stderr, 3000))
	}
	out, err := e.Podman("run", "--rm", "localhost/sourceos/agent-workspace:python-3.11", "python3", "--version")
	if err != nil || !strings.Contains(out, "Python 3.11") {
		t.Errorf("python in the stack image: %v %q", err, out)
	}
	checkClientsThroughTheGateway(t, e, w, "localhost/sourceos/agent-workspace:python-3.11")
	for _, stack := range []string{"go", "node"} {
		if code, stdout, stderr = build("--stack", stack); code != 0 {
			t.Fatalf("--stack %s: exit %d, %s\n%s", stack, code, stdout, tail(stderr, 3000))
		}
	}
	checkProjectStacks(t, e)
	checkNewFromGit(t, e)

	// The browser IDE: one more stage on the default image, and real code-server served to
	// headless Chromium.
	code, stdout, stderr = build("--ide")
	if code != 0 || strings.Join(actions(stdout), ",") != "reuse,reuse,reuse,built" {
		t.Fatalf("--ide: exit %d, %s\n%s", code, stdout, tail(stderr, 3000))
	}
	checkIDEInBrowser(t, e, w)

	// A stage that fails (its check cannot pass) leaves no image under its name, no temporary
	// name and no manifest entry, and the images before it intact.
	bad := filepath.Join(t.TempDir(), "catalog.json")
	os.WriteFile(bad, []byte(fmt.Sprintf(`{"schemaVersion":1,"suite":"bookworm","tools":{"claude-code":%q,"codex":%q},
"ide":{"codeServer":"4.89.1","vscodeRipgrep":"1.15.9","ripgrepPrebuilt":"v13.0.0-10"},
"stacks":[{"id":"broken","versions":[{"version":"1","packages":["hello"],"check":"hello --version | grep -F 'no such version'"}]}]}`,
		cat.Tools["claude-code"], cat.Tools["codex"])), 0o644)
	code, _, stderr = build("--catalog", bad, "--stack", "broken")
	if code != ExitFailure || !strings.Contains(stderr, "stacks stage") {
		t.Fatalf("broken stack: exit %d, stderr:\n%s", code, tail(stderr, 2000))
	}
	if out, _ := e.Podman("images", "--format", "{{.Repository}}:{{.Tag}}"); strings.Contains(out, "broken-1") || strings.Contains(out, "build-tmp") {
		t.Errorf("a failed build left names behind:\n%s", out)
	}
	entries := manifestEntries(t, w)
	if _, ok := entries["localhost/sourceos/agent-workspace:broken-1"]; ok {
		t.Error("a failed build was recorded in the manifest")
	}
	for _, ref := range []string{image.DefaultRef, "localhost/sourceos/agent-workspace:python-3.11", "localhost/sourceos/agent-workspace:ide"} {
		if e, ok := entries[ref]; !ok || e.Source.Kind != image.KindBuild || e.ID == "" {
			t.Errorf("manifest entry for %s = %+v", ref, e)
		}
	}

	// --base starts from an existing image instead of debootstrap (here the root filesystem
	// just built, so no registry is needed); --tag names the result.
	code, stdout, stderr = build("--base", "localhost/sourceos/agent-rootfs:bookworm", "--tag", "localhost/sosctl-it/from-base:1")
	if code != 0 || strings.Join(actions(stdout), ",") != "reuse,built,built" {
		t.Fatalf("--base: exit %d, %s\n%s", code, stdout, tail(stderr, 3000))
	}
	if out, err := e.Podman("run", "--rm", "localhost/sosctl-it/from-base:1", "codex", "--version"); err != nil || !strings.Contains(out, cat.Tools["codex"]) {
		t.Errorf("codex in the --base image: %v %q", err, out)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
