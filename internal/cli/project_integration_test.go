package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationProjectTest runs test on a fixture repository in a real container: a
// test.yaml's commands in order with its environment, stopping at the first failure with its
// exit code; --name runs one; -- COMMAND overrides; a running workspace is joined. Each run
// leaves a bundle that verifies and names what ran.
func TestIntegrationProjectTest(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	if err := os.MkdirAll(filepath.Join(w.repo, ".sourceos"), 0o755); err != nil {
		t.Fatal(err)
	}
	testYAML := `version: 1
commands:
  - name: env
    run: test "$APP_ENV" = testing && test "$(pwd)" = /workspace && echo ENV-OK
  - name: fails
    run: echo FAILS-RAN; exit 4
  - name: never
    run: echo NEVER-RAN
env:
  APP_ENV: testing
`
	if err := os.WriteFile(filepath.Join(w.repo, ".sourceos", "test.yaml"), []byte(testYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, w)
	cli := workspaceCLI(t, e, w, "proj")

	code, out, stderr := cli("test", "--repo", w.repo)
	if code != 4 {
		t.Fatalf("test: exit %d, want the failing command's 4\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "ENV-OK") || !strings.Contains(out, "FAILS-RAN") || strings.Contains(out, "NEVER-RAN") {
		t.Errorf("the commands' output:\n%s", out)
	}
	for _, want := range []string{"Testing " + w.repo + " with 3 commands (env, fails, never) (from .sourceos/test.yaml)", "✓ env passed in ", "✗ fails failed (exit 4) after ", "1 step(s) after it did not run"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	pred := verifyBundle(t, w, bundleFrom(t, stderr))
	wantProject := &evidence.Project{Action: "test", Source: ".sourceos/test.yaml", Env: []string{"APP_ENV"}, Steps: []evidence.ProjectStep{
		{Name: "env", Run: `test "$APP_ENV" = testing && test "$(pwd)" = /workspace && echo ENV-OK`}, {Name: "fails", Run: "echo FAILS-RAN; exit 4"}, {Name: "never", Run: "echo NEVER-RAN"}}}
	if !reflect.DeepEqual(pred.Session.Project, wantProject) || pred.Session.ExitCode == nil || *pred.Session.ExitCode != 4 {
		t.Errorf("the bundle's project %+v exit %v, want %+v and 4", pred.Session.Project, pred.Session.ExitCode, wantProject)
	}

	if code, out, stderr = cli("test", "--repo", w.repo, "--name", "env"); code != 0 || !strings.Contains(out, "ENV-OK") || strings.Contains(out, "FAILS-RAN") {
		t.Errorf("--name env: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr = cli("test", "--repo", w.repo, "--name", "e2e"); code != ExitUsage || !strings.Contains(stderr, `has no step named "e2e"; it has: env, fails, never`) {
		t.Errorf("--name e2e: exit %d\n%s", code, stderr)
	}
	code, out, stderr = cli("test", "--repo", w.repo, "--", "sh", "-c", "echo OVERRIDE; exit 6")
	if code != 6 || !strings.Contains(out, "OVERRIDE") || strings.Contains(out, "ENV-OK") {
		t.Errorf("-- COMMAND: exit %d\n%s\n%s", code, out, stderr)
	}
	if p := verifyBundle(t, w, bundleFrom(t, stderr)).Session.Project; p == nil || p.Source != "the command line" || p.Steps[0].Run != "sh -c 'echo OVERRIDE; exit 6'" {
		t.Errorf("the override's project: %+v", p)
	}

	// With the workspace up, test joins it: the same container, a join's record.
	if code, _, stderr = cli("up", "--repo", w.repo, "--name", "proj"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, stderr)
	}
	code, out, stderr = cli("test", "--repo", w.repo, "--name", "env")
	if code != 0 || !strings.Contains(out, "ENV-OK") || !strings.Contains(stderr, "joining workspace proj") {
		t.Fatalf("test in the workspace: exit %d\n%s\n%s", code, out, stderr)
	}
	join := verifyBundle(t, w, bundleFrom(t, stderr))
	if join.Session.Workspace == nil || join.Session.Workspace.Action != "join" || join.Session.Project == nil || join.Session.Project.Steps[0].Name != "env" {
		t.Errorf("the join's record: workspace %+v project %+v", join.Session.Workspace, join.Session.Project)
	}

	// A broken test file is an error at its line, and nothing runs.
	if err := os.WriteFile(filepath.Join(w.repo, ".sourceos", "test.yaml"), []byte("version: 1\ncomands: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr = cli("test", "--repo", w.repo); code != ExitUsage || !strings.Contains(stderr, `.sourceos/test.yaml:2: comands: unknown field (did you mean "commands"?)`) || strings.Contains(stderr, "evidence:") {
		t.Errorf("a broken test.yaml: exit %d\n%s\n%s", code, out, stderr)
	}
}

// checkProjectStacks (from TestIntegrationImageBuildFromScratch, on the real image with the go,
// node and python stacks built) tests real projects: init detects each fixture's stack and
// names its image, and test runs the detected command there — go test and npm test pass,
// pytest fails — with the tests' exit code and a bundle each.
func checkProjectStacks(t *testing.T, e *podmantest.Env) {
	fixtures := []struct {
		stack string
		files map[string]string
		exit  int
		out   string
	}{
		{"go", map[string]string{"go.mod": "module example.com/p\n\ngo 1.19\n", "p.go": "package p\n\nfunc Add(a, b int) int { return a + b }\n",
			"p_test.go": "package p\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(1, 2) != 3 {\n\t\tt.Fatal(\"Add\")\n\t}\n}\n"}, 0, "ok  \texample.com/p"},
		{"node", map[string]string{"package.json": `{"name": "p", "scripts": {"test": "node test.js"}}`, "test.js": "require('assert').strictEqual(1 + 1, 2); console.log('NODE-TESTS-OK')\n"}, 0, "NODE-TESTS-OK"},
		{"python", map[string]string{"pyproject.toml": "[project]\nname = \"p\"\n", "test_p.py": "def test_add():\n    assert 1 + 1 == 3\n"}, 1, "1 failed"},
	}
	for _, fx := range fixtures {
		t.Run(fx.stack, func(t *testing.T) {
			w := newWorkspace(t, e, "")
			for name, body := range fx.files {
				if err := os.WriteFile(filepath.Join(w.repo, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			gitRepo(t, w)
			prof := filepath.Join(w.home, "project.yaml")
			code, _, stderr := runCLI(t, e, w, "agent-machine", "init", "--repo", w.repo, "--out", prof)
			if code != 0 || !strings.Contains(stderr, "Stack "+fx.stack) {
				t.Fatalf("init: exit %d\n%s", code, stderr)
			}
			code, out, stderr := runCLI(t, e, w, "agent-machine", "--profile", prof, "test", "--repo", w.repo)
			if code != fx.exit || !strings.Contains(out, fx.out) {
				t.Fatalf("test: exit %d (want %d), stdout lacks %q:\n%s\n%s", code, fx.exit, fx.out, out, stderr)
			}
			pred := verifyBundle(t, w, bundleFrom(t, stderr))
			if pred.Session.Project == nil || pred.Session.Project.Action != "test" || !strings.Contains(pred.Image.Ref, fx.stack) {
				t.Errorf("the bundle: project %+v image %s", pred.Session.Project, pred.Image.Ref)
			}
		})
	}
}
