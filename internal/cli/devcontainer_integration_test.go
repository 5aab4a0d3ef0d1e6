package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// TestIntegrationADevcontainerImportRunsItsCommandsInTheWorkspace imports a devcontainer.json
// that also asks for what widens the boundary, brings the workspace up on the real service,
// and checks that its lifecycle commands ran inside (post-create once, post-start at each up),
// its environment and folder apply, and nothing it refused happened — its initializeCommand
// never ran on the host.
func TestIntegrationADevcontainerImportRunsItsCommandsInTheWorkspace(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	hostMarker := filepath.Join(t.TempDir(), "initialize-ran-on-the-host")
	dc := fmt.Sprintf(`{
  // A repository's devcontainer, as an editor would use it
  "image": %q,
  "workspaceFolder": "/workspaces/app",
  "containerEnv": { "GREETING": "hello", "DIR": "${containerWorkspaceFolder}/sub" },
  "forwardPorts": [3000],
  "initializeCommand": "touch %s",
  "runArgs": ["--privileged"],
  "capAdd": ["SYS_ADMIN"],
  "postCreateCommand": "echo created-as-$(id -u) >> /workspaces/app/.lifecycle",
  "postStartCommand": { "note": ["sh", "-c", "echo started >> /workspaces/app/.lifecycle"] },
}
`, podmantest.Image, hostMarker)
	if err := os.MkdirAll(filepath.Join(w.repo, ".devcontainer"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(w.repo, ".devcontainer", "devcontainer.json"), dc)
	if os.Getuid() == 0 {
		chownTree(t, w.repo, 1000, 1000)
	}
	imported := filepath.Join(w.home, "imported.yaml")
	f, _, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "init", "--from-devcontainer", w.repo, "--out", imported); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"✗ initializeCommand: refused: runs on the host", "✗ runArgs: refused", "✗ capAdd: refused: adds capabilities (SYS_ADMIN)",
		"✓ postCreateCommand → spec.workspace.postCreate", "✓ forwardPorts[0] → spec.workspace.ports"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("init does not say %q:\n%s", want, errOut)
		}
	}
	p, err := profile.Load(imported, profile.Env{Home: w.home})
	if err != nil {
		t.Fatalf("the imported profile does not load: %v", err)
	}
	if p.Spec.Workspace.MountPath != "/workspaces/app" || p.Spec.Env["GREETING"] != "hello" || len(p.Spec.Workspace.Ports) != 1 || p.Spec.Image.Ref != podmantest.Image {
		t.Errorf("imported: %+v env %v", p.Spec.Workspace, p.Spec.Env)
	}

	w.profile = imported
	cli := workspaceCLI(t, e, w, "app")
	code, out, stderr := cli("up", "--repo", w.repo, "--name", "app", "--dry-run")
	if code != 0 || !strings.Contains(out, "Post-create") || !strings.Contains(out, "Post-start") {
		t.Errorf("up --dry-run does not show the lifecycle commands: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr = cli("up", "--repo", w.repo, "--name", "app"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"Running post-create command postCreate in workspace app", "Running post-start command postStart-note in workspace app"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("up does not say %q:\n%s", want, stderr)
		}
	}
	check := `cat /workspaces/app/.lifecycle; echo "GREETING=$GREETING DIR=$DIR pwd=$(pwd)"; grep CapEff /proc/self/status`
	code, out, stderr = cli("exec", "--name", "app", "--", "sh", "-c", check)
	if code != 0 {
		t.Fatalf("exec: exit %d\n%s", code, stderr)
	}
	uid := os.Getuid()
	if uid == 0 {
		uid = 1000
	}
	if want := fmt.Sprintf("created-as-%d\nstarted\nGREETING=hello DIR=/workspaces/app/sub pwd=/workspaces/app\nCapEff:\t0000000000000000\n", uid); out != want {
		t.Errorf("inside:\n%s\nwant:\n%s", out, want)
	}
	if code, _, stderr = cli("down", "--name", "app"); code != 0 {
		t.Fatalf("down: exit %d\n%s", code, stderr)
	}
	if code, _, stderr = cli("up", "--repo", w.repo, "--name", "app"); code != 0 || strings.Contains(stderr, "post-create") {
		t.Fatalf("second up: exit %d (post-create must not run again)\n%s", code, stderr)
	}
	if code, out, _ = cli("exec", "--name", "app", "--", "cat", "/workspaces/app/.lifecycle"); code != 0 || out != fmt.Sprintf("created-as-%d\nstarted\nstarted\n", uid) {
		t.Errorf("after a second up: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(hostMarker); err == nil {
		t.Error("the devcontainer's initializeCommand ran on the host")
	}
	if _, err := os.Stat(filepath.Join(w.repo, ".lifecycle")); err == nil {
		t.Error("a lifecycle command wrote to the user's work tree")
	}
}
