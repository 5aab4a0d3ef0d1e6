package project

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/image"
)

// repo makes a fixture repository holding files (name → content).
func repo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const testYAML = "version: 1\ncommand: make check\ncommands:\n  - name: unit\n    run: go test ./...\n  - name: lint\n    run: go vet ./...\nenv:\n  APP_ENV: testing\n  WORKERS: 4\n  GO_VERSION: 1.20\n  UMASK: 0755\n  DEBUG: true\n"

func TestDetectTests(t *testing.T) {
	pkgTest := `{"scripts": {"test": "jest"}}`
	cases := []struct {
		name   string
		files  map[string]string
		only   string
		source string
		steps  []Step
		env    []string
	}{
		{"sourceos test file wins over everything", map[string]string{".sourceos/test.yaml": testYAML, ".core/test.yaml": "version: 1\ncommand: other\n", "package.json": pkgTest, "go.mod": "module x\n"},
			"", ".sourceos/test.yaml", []Step{{"command", "make check"}, {"unit", "go test ./..."}, {"lint", "go vet ./..."}}, []string{"APP_ENV=testing", "DEBUG=true", "GO_VERSION=1.20", "UMASK=0755", "WORKERS=4"}},
		{"core test file for seed users", map[string]string{".core/test.yaml": "version: 1\ncommand: vendor/bin/pest\n", "package.json": pkgTest},
			"", ".core/test.yaml", []Step{{"command", "vendor/bin/pest"}}, nil},
		{"--name keeps one step", map[string]string{".sourceos/test.yaml": testYAML}, "lint", ".sourceos/test.yaml", []Step{{"lint", "go vet ./..."}}, []string{"APP_ENV=testing", "DEBUG=true", "GO_VERSION=1.20", "UMASK=0755", "WORKERS=4"}},
		{"composer test before package.json", map[string]string{"composer.json": `{"scripts": {"test": ["pest", "phpstan"]}}`, "package.json": pkgTest},
			"", "composer.json (scripts.test)", []Step{{"test", "composer test"}}, nil},
		{"composer.json without a test script is passed over", map[string]string{"composer.json": `{"scripts": {"lint": "pint"}}`, "package.json": pkgTest},
			"", "package.json (scripts.test)", []Step{{"test", "npm test"}}, nil},
		{"package.json without scripts is passed over", map[string]string{"package.json": `{"name": "x"}`, "go.mod": "module x\n"},
			"", "go.mod", []Step{{"test", "go test ./..."}}, nil},
		{"an empty test script is not a script", map[string]string{"package.json": `{"scripts": {"test": ""}}`, "pytest.ini": ""},
			"", "pytest.ini", []Step{{"test", "pytest"}}, nil},
		{"go before python", map[string]string{"go.mod": "module x\n", "pyproject.toml": ""}, "", "go.mod", []Step{{"test", "go test ./..."}}, nil},
		{"pyproject", map[string]string{"pyproject.toml": "[project]\n"}, "", "pyproject.toml", []Step{{"test", "pytest"}}, nil},
		{"Taskfile last", map[string]string{"Taskfile.yaml": "version: '3'\n"}, "", "Taskfile.yaml", []Step{{"test", "task test"}}, nil},
		{"Taskfile.yml too", map[string]string{"Taskfile.yml": "version: '3'\n"}, "", "Taskfile.yml", []Step{{"test", "task test"}}, nil},
		{"a directory named go.mod is not a marker", map[string]string{"go.mod/x": "", "pytest.ini": ""}, "", "pytest.ini", []Step{{"test", "pytest"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectTests(repo(t, c.files), c.only)
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != c.source || !reflect.DeepEqual(got.Steps, c.steps) || !reflect.DeepEqual(got.Env, c.env) {
				t.Errorf("got %+v, want source %q steps %v env %v", got, c.source, c.steps, c.env)
			}
		})
	}
}

func TestDetectTestsErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		only  string
		want  string
	}{
		{"nothing to go on", map[string]string{"README": "hi"}, "", "says how to test it"},
		{"broken package.json names its line", map[string]string{"package.json": "{\n  \"scripts\": {\n    \"test\": \"jest\",\n  }\n}\n"}, "", "package.json:4: is not valid JSON"},
		{"scripts of the wrong type", map[string]string{"package.json": "{\"scripts\": [\"test\"]}"}, "", "package.json:1: scripts must be"},
		{"--name without a test file", map[string]string{"go.mod": "module x\n"}, "unit", `has no test file (.sourceos/test.yaml or .core/test.yaml) to name step "unit" in`},
		{"--name of a missing step", map[string]string{".sourceos/test.yaml": testYAML}, "e2e", `.sourceos/test.yaml: has no step named "e2e"; it has: command, unit, lint`},
		{"a broken test file is not passed over", map[string]string{".sourceos/test.yaml": "version: 2\ncommand: x\n", "go.mod": "module x\n"}, "", "test.yaml:1: version: must be 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DetectTests(repo(t, c.files), c.only)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	var nt *NoTestsError
	if _, err := DetectTests(repo(t, nil), ""); !errors.As(err, &nt) {
		t.Errorf("an empty repository: got %v, want a NoTestsError", err)
	}
}

func TestParseTestFileErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // each problem, file:line: field: message
	}{
		{"empty", "", []string{"t.yaml: is empty; give it version: 1"}},
		{"not a mapping", "- a\n", []string{"t.yaml:1: must be a YAML mapping"}},
		{"version missing", "command: x\n", []string{"t.yaml:1: version: is required"}},
		{"wrong version", "version: 2\ncommand: x\n", []string{"t.yaml:1: version: must be 1 (the only version of this format)"}},
		{"nothing to run", "version: 1\nenv: {A: b}\n", []string{"t.yaml:1: names no test to run"}},
		{"unknown field with a suggestion", "version: 1\ncommand: x\ncomands: []\n", []string{`t.yaml:3: comands: unknown field (did you mean "commands"?)`}},
		{"step without run", "version: 1\ncommands:\n  - name: unit\n", []string{"t.yaml:3: commands[0].run: is required"}},
		{"bad step name", "version: 1\ncommands:\n  - name: 'a b'\n    run: x\n", []string{"t.yaml:3: commands[0].name: must be 1-63 letters"}},
		{"duplicate step names", "version: 1\ncommands:\n  - name: unit\n    run: x\n  - name: unit\n    run: y\n", []string{`t.yaml:5: commands[1].name: "unit" is the name of commands[0] too`}},
		{"a step named like command", "version: 1\ncommand: x\ncommands:\n  - name: command\n    run: y\n", []string{`t.yaml:4: commands[0].name: "command" names the file's command: line`}},
		{"bad env name", "version: 1\ncommand: x\nenv:\n  1BAD: y\n", []string{"t.yaml:4: env.1BAD: must be an environment variable name"}},
		{"env value a list", "version: 1\ncommand: x\nenv:\n  A: [1]\n", []string{"t.yaml:4: env.A: must be"}},
		{"duplicate key", "version: 1\ncommand: x\ncommand: y\n", []string{"t.yaml:3: command: is set twice (first on line 2)"}},
		{"two documents", "version: 1\ncommand: x\n---\nversion: 1\n", []string{"keep one test file per file"}},
		{"several problems, in line order", "version: 3\ncommand: 7\nfoo: 1\n", []string{"t.yaml:1: version", "t.yaml:2: command: must be a string", "t.yaml:3: foo: unknown field"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTestFile("t.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			last := -1
			for _, w := range c.want {
				i := strings.Index(msg, w)
				if i < 0 || i < last {
					t.Fatalf("error %q: want %q (in this order: %q)", msg, w, c.want)
				}
				last = i
			}
		})
	}
}

func TestDetectServer(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]string
		sub    string
		source string
		run    string
	}{
		{"artisan first", map[string]string{"artisan": "", "package.json": `{"scripts": {"dev": "vite"}}`}, "", "artisan", "php artisan octane:start --host=0.0.0.0 --port=8123"},
		{"package.json dev", map[string]string{"package.json": `{"scripts": {"dev": "vite", "start": "node ."}}`, "composer.json": "{}"}, "", "package.json (scripts.dev)", "npm run dev -- --host 0.0.0.0 --port 8123"},
		{"package.json start", map[string]string{"package.json": `{"scripts": {"start": "node ."}}`}, "", "package.json (scripts.start)", "PORT=8123 npm start"},
		{"package.json without either falls through", map[string]string{"package.json": `{"scripts": {"test": "jest"}}`, "manage.py": ""}, "", "manage.py", "python3 manage.py runserver 0.0.0.0:8123"},
		{"composer.json", map[string]string{"composer.json": "{}", "go.mod": "", "main.go": ""}, "", "composer.json", "frankenphp php-server -l :8123"},
		{"go.mod with main.go", map[string]string{"go.mod": "module x\n", "main.go": "package main\n"}, "", "go.mod and main.go", "PORT=8123 go run ."},
		{"go.mod alone is a library", map[string]string{"go.mod": "module x\n"}, "", "", "python3 -m http.server --bind 0.0.0.0 8123"},
		{"manage.py", map[string]string{"manage.py": ""}, "", "manage.py", "python3 manage.py runserver 0.0.0.0:8123"},
		{"fallback", map[string]string{"index.html": "<p>hi"}, "", "", "python3 -m http.server --bind 0.0.0.0 8123"},
		{"--path looks in the subdirectory", map[string]string{"artisan": "", "web/package.json": `{"scripts": {"dev": "vite"}}`}, "web", "package.json (scripts.dev)", "npm run dev -- --host 0.0.0.0 --port 8123"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectServer(repo(t, c.files), c.sub, 8123)
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != c.source || got.Run != c.run || got.Port != 8123 || got.Dir != c.sub {
				t.Errorf("got %+v, want source %q run %q", got, c.source, c.run)
			}
		})
	}
}

func TestDetectServerRefusals(t *testing.T) {
	outside := t.TempDir()
	dir := repo(t, map[string]string{"web/index.html": "", "file": ""})
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	for sub, want := range map[string]string{
		"../x":      "give a directory inside the repository",
		"/etc":      "give a directory inside the repository",
		"web/../..": "give a directory inside the repository",
		"nope":      "no such directory",
		"file":      "not a directory",
		"out":       "leads outside the repository",
	} {
		if _, err := DetectServer(dir, sub, 8000); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--path %s: got %v, want %q", sub, err, want)
		}
	}
	for _, port := range []int{0, -1, 65536} {
		if _, err := DetectServer(dir, "", port); err == nil {
			t.Errorf("port %d accepted", port)
		}
	}
	if _, err := DetectServer(repo(t, map[string]string{"package.json": "{"}), "", 8000); err == nil || !strings.Contains(err.Error(), "package.json:1: is not valid JSON") {
		t.Errorf("a broken package.json: %v", err)
	}
}

func TestDetectStack(t *testing.T) {
	cases := []struct {
		name    string
		files   map[string]string
		id      string
		others  []string
		warning string
	}{
		{"rust", map[string]string{"Cargo.toml": ""}, "rust", nil, ""},
		{"node", map[string]string{"package.json": "{}"}, "node", nil, ""},
		{"go", map[string]string{"go.mod": ""}, "go", nil, ""},
		{"python by requirements", map[string]string{"requirements.txt": ""}, "python", nil, ""},
		{"python by setup.py", map[string]string{"setup.py": ""}, "python", nil, ""},
		{"ruby", map[string]string{"Gemfile": ""}, "ruby", nil, ""},
		{"java by gradle", map[string]string{"build.gradle": ""}, "java", nil, ""},
		{"java by maven", map[string]string{"pom.xml": ""}, "java", nil, ""},
		{"none", map[string]string{"README.md": ""}, "", nil, ""},
		{"markers only count at the root", map[string]string{"sub/Cargo.toml": ""}, "", nil, ""},
		{"several: most source files wins", map[string]string{"package.json": "{}", "go.mod": "", "a.go": "", "b/c.go": "", "web/app.ts": ""},
			"go", []string{"node"}, "the repository also looks like node (1 files); chose go (2 files); give --stack to choose another"},
		{"dependencies are not counted", map[string]string{"package.json": "{}", "go.mod": "", "a.go": "", "node_modules/x/1.js": "", "node_modules/x/2.js": "", "vendor/v.go": "", "vendor/w.go": "", "index.js": ""},
			"node", []string{"go"}, ""},
		{"a tie goes to the seed's order", map[string]string{"Cargo.toml": "", "go.mod": "", "a.go": "", "b.rs": ""}, "rust", []string{"go"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DetectStack(repo(t, c.files))
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != c.id || !reflect.DeepEqual(got.Others, c.others) {
				t.Errorf("got %+v, want %q others %v", got, c.id, c.others)
			}
			if c.warning != "" && got.Warning() != c.warning {
				t.Errorf("warning %q, want %q", got.Warning(), c.warning)
			}
			if len(c.others) == 0 && got.Warning() != "" {
				t.Errorf("a warning without others: %q", got.Warning())
			}
		})
	}
}

func TestEveryDetectedStackIsInTheCatalog(t *testing.T) {
	c := image.DefaultCatalog()
	for _, id := range StackIDs() {
		if _, err := c.Resolve([]string{id}); err != nil {
			t.Errorf("stack %s is detected but the image catalog cannot build it: %v", id, err)
		}
	}
}

// TestRunnerStopsAtTheFirstFailure runs the runner with this host's sh: each step's report,
// the failing step's exit code, nothing after it, and the test file's environment.
func TestRunnerStopsAtTheFirstFailure(t *testing.T) {
	dir := t.TempDir()
	tests := &Tests{Env: []string{"GREETING=hello world"}, Steps: []Step{
		{"first", `echo "$GREETING" > ` + dir + `/first`},
		{"second", "exit 3"},
		{"third", "touch " + dir + "/third"},
	}}
	argv := tests.Argv()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v, want 3", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "first")); string(b) != "hello world\n" {
		t.Errorf("first step wrote %q: the environment did not reach it", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "third")); err == nil {
		t.Error("the step after the failure ran")
	}
	out := stderr.String()
	for _, want := range []string{"==> [1/3] first: echo", "✓ first passed in ", "==> [2/3] second: exit 3", "✗ second failed (exit 3) after ", "; 1 step(s) after it did not run"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[3/3]") {
		t.Errorf("the third step was announced:\n%s", out)
	}

	ok := (&Tests{Steps: []Step{{"only", "true"}}}).Argv()
	if err := exec.Command(ok[0], ok[1:]...).Run(); err != nil {
		t.Errorf("a passing step: %v", err)
	}
	if got := tests.EnvNames(); !reflect.DeepEqual(got, []string{"GREETING"}) {
		t.Errorf("EnvNames = %v", got)
	}
}

// TestProjectFilesStayInTheRepository: a test file or manifest that is a symbolic link within
// the repository is read; one out of it is refused (its content would reach the container),
// and a FIFO is refused without blocking.
func TestProjectFilesStayInTheRepository(t *testing.T) {
	outside := repo(t, map[string]string{"secret.yaml": "version: 1\ncommand: cat /host/secret\n"})
	dir := repo(t, map[string]string{"real-test.yaml": "version: 1\ncommand: make check\n"})
	if err := os.MkdirAll(filepath.Join(dir, ".sourceos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../real-test.yaml", filepath.Join(dir, ".sourceos", "test.yaml")); err != nil {
		t.Fatal(err)
	}
	if got, err := DetectTests(dir, ""); err != nil || got.Steps[0].Run != "make check" {
		t.Errorf("a link within the repository: %+v, %v", got, err)
	}
	out := repo(t, nil)
	if err := os.MkdirAll(filepath.Join(out, ".sourceos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(out, ".sourceos", "test.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := DetectTests(out, ""); err == nil || !strings.Contains(err.Error(), "is a symbolic link out of the repository") {
		t.Errorf("a link out of the repository: %v", err)
	}
	fifo := repo(t, nil)
	if err := syscall.Mkfifo(filepath.Join(fifo, "package.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DetectTests(fifo, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO: %v", err)
	}
}
