package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
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

var serveURL = regexp.MustCompile(`Serving \S+ on this host only: http://127\.0\.0\.1:([0-9]+)/`)

// TestIntegrationProjectServe serves a dev server (busybox httpd, bound to the container's
// wildcard address as dev servers often are) from a workspace serve brings up: it answers on
// 127.0.0.1 at the port, concurrently, and on none of the host's other addresses; the serving
// workspace still cannot reach a host outside its egress policy; Ctrl-C stops it and takes
// the workspace down; the serving join's bundle verifies and names what ran. A port in use
// on the host is refused before anything starts.
func TestIntegrationProjectServe(t *testing.T) {
	e := podmantest.Need(t)
	egress := startEgressServers(t)
	w := newWorkspace(t, e, fmt.Sprintf(`  network:
    mode: gateway
    egress:
      allow: ["127.0.0.1:%d"]
`, egress.p))
	if err := os.WriteFile(filepath.Join(w.repo, "index.html"), []byte("SERVED-PAGE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, w)
	cli := workspaceCLI(t, e, w, "app")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	for _, dry := range []bool{true, false} {
		args := []string{"serve", "--repo", w.repo, "--port", busyPort}
		if dry {
			args = append(args, "--dry-run") // fails where the real run would
		}
		code, _, stderr := cli(append(args, "--", "httpd", "-f", "-p", "0.0.0.0:"+busyPort)...)
		if code != ExitUsage || !strings.Contains(stderr, "--port") || strings.Contains(stderr, "Bringing workspace") {
			t.Errorf("a port in use (dry run %v): exit %d\n%s", dry, code, stderr)
		}
	}
	busy.Close()
	code, out, stderr := cli("serve", "--repo", w.repo, "--port", busyPort, "--dry-run", "--", "httpd")
	if code != 0 || !strings.Contains(out, "Session ") || !strings.Contains(out, "dry run: would bring workspace app up (the plan above)") {
		t.Errorf("serve --dry-run: exit %d\n%s\n%s", code, out, stderr)
	}
	if ps, _ := e.Podman("ps", "-aq", "--filter", "label="+agentmachine.LabelWorkspace+"=app"); strings.TrimSpace(ps) != "" {
		t.Errorf("serve --dry-run made containers: %s", ps)
	}

	port := strconv.Itoa(freePort(t))
	srv := serveInBackground(t, e, w, serveURL, "--profile", w.profile, "am", "serve", "--repo", w.repo, "--port", port, "--", "httpd", "-f", "-p", "0.0.0.0:"+port, "-h", "/workspace")
	if srv.port != port || !strings.Contains(srv.stderr.String(), "Bringing workspace app up") {
		t.Fatalf("served on %s, want %s:\n%s", srv.port, port, srv.stderr.String())
	}
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://127.0.0.1:" + port + "/index.html")
			if err != nil {
				t.Errorf("GET: %v", err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "SERVED-PAGE\n" {
				t.Errorf("GET: %d %q", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	for _, ip := range otherAddresses(t) {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the dev server answers on %s, not only on the loopback", ip)
		}
	}
	script := fmt.Sprintf(`wget -q -O- http://127.0.0.1:%d/allowed; echo " allowed=$?"
wget -q -O- http://127.0.0.1:%d/other 2>&1; echo " other=$?"`, egress.p, egress.op)
	code, out, stderr = cli("exec", "--name", "app", "--", "sh", "-c", script)
	if code != 0 || !strings.Contains(out, " allowed=0") || strings.Contains(out, " other=0") || strings.Contains(out, "REACHED 127.0.0.1:"+fmt.Sprint(egress.op)) {
		t.Errorf("egress while serving: exit %d\n%s\n%s", code, out, stderr)
	}

	if code := srv.stop(t); code != 0 {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, srv.stderr.String())
	}
	if !strings.Contains(srv.stderr.String(), "Taking workspace app down") {
		t.Errorf("serve did not take down the workspace it brought up:\n%s", srv.stderr.String())
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second); err == nil {
		c.Close()
		t.Error("the port still answers after Ctrl-C")
	}
	if out, _ := e.Podman("ps", "-q", "--filter", "label="+agentmachine.LabelWorkspace+"=app"); strings.TrimSpace(out) != "" {
		t.Errorf("the workspace's containers still run: %s", out)
	}
	dirs, _ := evidence.List(w.evidenceDir())
	var served *evidence.Predicate
	for _, dir := range dirs {
		if p := verifyBundle(t, w, dir); p.Session.Project != nil && p.Session.Project.Action == "serve" {
			served = p
		}
	}
	want := &evidence.Project{Action: "serve", Source: "the command line", Port: srv.portNumber(t),
		Steps: []evidence.ProjectStep{{Name: "server", Run: "httpd -f -p 0.0.0.0:" + port + " -h /workspace"}}}
	if served == nil || !reflect.DeepEqual(served.Session.Project, want) || served.Session.Workspace == nil || served.Session.Workspace.Action != "join" {
		t.Errorf("no serving join's bundle naming what ran (want %+v) among %d bundles: %+v", want, len(dirs), served)
	}
}

// portNumber is the port served, as a number.
func (s *ideServing) portNumber(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(s.port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIntegrationProjectNew makes a project from nothing: the directory under ~/dev, a
// repository git init made, the profile in the profiles directory, the workspace up, and the
// lines an editor needs. An existing directory, an SSH URL or a URL with credentials is
// refused before anything is made; a failure after the directory was made (the stack image
// is missing) removes the directory and the profile.
func TestIntegrationProjectNew(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	cli := workspaceCLI(t, e, w, "blog")
	profiles := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "profiles")

	code, out, stderr := cli("new", "blog")
	if code != 0 {
		t.Fatalf("new: exit %d\n%s", code, stderr)
	}
	dir := filepath.Join(w.home, "dev", "blog")
	if strings.TrimSpace(out) != dir {
		t.Errorf("printed %q, want the path %s", out, dir)
	}
	if st, err := os.Stat(filepath.Join(dir, ".git")); err != nil || !st.IsDir() {
		t.Errorf("no repository in %s: %v", dir, err)
	}
	for _, want := range []string{"✓ Project blog is ready.", "path:      " + dir, "profile:   " + filepath.Join(profiles, "blog.yaml"),
		"workspace: blog (container ", "SSH host sourceos-blog", "verify:    sourceosctl agent-machine status"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if ps, _ := e.Podman("ps", "-q", "--filter", "label="+agentmachine.LabelWorkspace+"=blog"); strings.TrimSpace(ps) == "" {
		t.Error("the workspace is not running")
	}
	code, _, stderr = cli("--profile", filepath.Join(profiles, "blog.yaml"), "exec", "--name", "blog", "--", "sh", "-c", "test -d .git && echo IN-REPO")
	if code != 0 {
		t.Errorf("exec in the new workspace: exit %d\n%s", code, stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"new", "blog"}, "already exists"},
		{[]string{"new", "Bad Name"}, "is not a workspace name"},
		{[]string{"new", "site", "--git", "git@github.com:org/site.git"}, "is not a URL"},
		{[]string{"new", "site", "--git", "ssh://git@github.com/org/site.git"}, "only http and https URLs"},
		{[]string{"new", "site", "--git", "https://user:secret@example.com/site.git"}, "carries credentials"},
		{[]string{"new", "site", "--auth", "gh"}, "without --git nothing is cloned"},
		{[]string{"new", "site", "--stack", "php"}, `unknown stack "php"`},
	} {
		code, _, stderr := cli(c.args...)
		if code != ExitUsage || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "secret@") {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", c.args, code, c.want, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(w.home, "dev", "site")); err == nil {
		t.Error("a refused new made its directory")
	}

	// The rust stack's image is not in the test's storage (no test builds it; removed to be
	// sure): up fails, and what new made goes — the directory, the parents it made for it, the
	// profile.
	_, _ = e.Podman("rmi", "-f", "localhost/sourceos/agent-workspace:rust-1.63")
	workspaceCLI(t, e, w, "api") // removes its containers, should up have succeeded after all
	code, _, stderr = cli("new", "api", "--stack", "rust", "--path", filepath.Join(w.home, "work", "team", "api"))
	if code != ExitMissing || !strings.Contains(stderr, "image build --stack rust@1.63") ||
		!strings.Contains(stderr, "removed "+filepath.Join(w.home, "work")+" and the profile "+filepath.Join(profiles, "api.yaml")) {
		t.Errorf("new with a missing image: exit %d\n%s", code, stderr)
	}
	for _, p := range []string{filepath.Join(w.home, "work"), filepath.Join(profiles, "api.yaml")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was left behind", p)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("a failed new removed another project: %v", err)
	}
}

// checkNewFromGit (from TestIntegrationImageBuildFromScratch: the real image has git) makes a
// project with new --git from a Git HTTP server on this host's loopback (git http-backend):
// the clone runs in a governed session whose egress allows that host only, comes back as a
// bundle checked into a repository made here, its go stack is detected, and its workspace
// comes up on the go stack image.
func checkNewFromGit(t *testing.T, e *podmantest.Env) {
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend is not installed: %v", err)
	}
	w := newWorkspace(t, e, "")
	src := filepath.Join(t.TempDir(), "src")
	root := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", src},
		{"-C", src, "commit", "-q", "--allow-empty", "-m", "empty start"},
	} {
		if out, err := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for name, body := range map[string]string{"go.mod": "module example.com/app\n\ngo 1.19\n", "main.go": "package main\n\nfunc main() {}\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-C", src, "add", "-A"}, {"-C", src, "commit", "-q", "-m", "the app"}, {"-C", src, "tag", "v0.1.0"},
		{"clone", "-q", "--bare", src, filepath.Join(root, "app.git")},
	} {
		if out, err := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	var mu sync.Mutex
	var requests []string
	// On 127.0.0.2, as a host on the internet would be to the container: 127.0.0.1 is in the
	// session's NO_PROXY (the container's own loopback).
	_, addr, _ := internetStandIn(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		mu.Unlock()
		(&cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}).ServeHTTP(rw, r)
	}), false)
	url := "http://" + addr + "/app.git"

	// (newWorkspace's own repository is ~/dev/app: the project is another name.)
	t.Cleanup(func() {
		runCLI(t, e, w, "agent-machine", "--profile", filepath.Join(w.home, ".config", "sourceos", "agent-machine", "profiles", "cloned.yaml"), "rm", "cloned", "--yes")
	})
	code, out, stderr := runCLI(t, e, w, "agent-machine", "new", "cloned", "--git", url)
	if code != 0 {
		t.Fatalf("new --git: exit %d\n%s\n%s", code, out, stderr)
	}
	dir := filepath.Join(w.home, "dev", "cloned")
	if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err != nil || !strings.Contains(string(b), "example.com/app") {
		t.Errorf("the clone's files: %v %q", err, b)
	}
	gitOut := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "safe.directory=*"}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := gitOut("log", "--format=%s"); got != "the app\nempty start" {
		t.Errorf("the clone's history: %q", got)
	}
	if got := gitOut("remote", "get-url", "origin"); got != url {
		t.Errorf("origin: %q", got)
	}
	if got := gitOut("tag"); got != "v0.1.0" {
		t.Errorf("tags: %q", got)
	}
	if !strings.Contains(stderr, "stack:     go (localhost/sourceos/agent-workspace:go-1.19)") || !strings.Contains(stderr, "✓ Project cloned is ready.") {
		t.Errorf("new's report:\n%s", stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) == 0 || !strings.Contains(strings.Join(requests, "\n"), "/app.git/info/refs") {
		t.Errorf("the Git server saw no clone: %v", requests)
	}
}
