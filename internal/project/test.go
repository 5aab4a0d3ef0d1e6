package project

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/sourceos/sourceosctl/internal/yamlschema"
	"github.com/sourceos/sourceosctl/schemas"
)

// TestFiles are where a repository says how to test it, in the order they are looked for.
var TestFiles = []string{".sourceos/test.yaml", ".core/test.yaml"}

// Tests is how a repository is tested.
type Tests struct {
	// Source is where the steps came from: a test file, the file a rule matched, or
	// "the command line".
	Source string `json:"source"`
	Steps  []Step `json:"steps"`
	// Env is set for every step (test.yaml's env), sorted by name.
	Env []string `json:"env,omitempty"`
}

// Names lists the step names, for messages.
func (t *Tests) Names() []string {
	var out []string
	for _, s := range t.Steps {
		out = append(out, s.Name)
	}
	return out
}

// testRule is one detection rule: a marker file and the command it implies.
type testRule struct {
	file   string
	script string // a script the JSON file must define; "" for any file
	run    string
}

// testRules are seed 001's order, after the test files.
var testRules = []testRule{
	{file: "composer.json", script: "test", run: "composer test"},
	{file: "package.json", script: "test", run: "npm test"},
	{file: "go.mod", run: "go test ./..."},
	{file: "pytest.ini", run: "pytest"},
	{file: "pyproject.toml", run: "pytest"},
	{file: "Taskfile.yaml", run: "task test"},
	{file: "Taskfile.yml", run: "task test"},
}

// NoTestsError says that nothing in the repository says how to test it.
type NoTestsError struct{ Dir string }

func (e *NoTestsError) Error() string {
	return fmt.Sprintf("nothing in %s says how to test it (looked for %s, then composer.json or package.json with a test script, go.mod, pytest.ini, pyproject.toml, Taskfile.yaml)",
		e.Dir, strings.Join(TestFiles, ", "))
}

// DetectTests decides how to test the repository at dir: the first test file, else the first
// rule that matches. only, when set, keeps the test file's step of that name.
func DetectTests(dir, only string) (*Tests, error) {
	for _, name := range TestFiles {
		data, ok, err := readManifest(dir, name)
		if err != nil {
			return nil, err
		}
		if ok {
			t, err := ParseTestFile(filepath.Join(dir, name), data)
			if err != nil {
				return nil, err
			}
			t.Source = name
			return t.only(only)
		}
	}
	if only != "" {
		return nil, &FileError{File: dir, Err: fmt.Errorf("has no test file (%s) to name step %q in", strings.Join(TestFiles, " or "), only)}
	}
	for _, r := range testRules {
		if r.script == "" {
			if exists(dir, r.file) {
				return &Tests{Source: r.file, Steps: []Step{{Name: "test", Run: r.run}}}, nil
			}
			continue
		}
		set, ok, err := scripts(dir, r.file)
		if err != nil {
			return nil, err
		}
		if ok && set[r.script] {
			return &Tests{Source: r.file + " (scripts.test)", Steps: []Step{{Name: "test", Run: r.run}}}, nil
		}
	}
	return nil, &NoTestsError{Dir: dir}
}

func (t *Tests) only(name string) (*Tests, error) {
	if name == "" {
		return t, nil
	}
	for _, s := range t.Steps {
		if s.Name == name {
			t.Steps = []Step{s}
			return t, nil
		}
	}
	return nil, &FileError{File: t.Source, Err: fmt.Errorf("has no step named %q; it has: %s", name, strings.Join(t.Names(), ", "))}
}

// envName is what an environment variable may be called.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var testKind = yamlschema.Kind{Name: "test file", Empty: "give it version: 1 and a command: (see sourceosctl agent-machine test --help)",
	Missing: "create it with version: 1 and a command: (see sourceosctl agent-machine test --help)"}

var testSchema = sync.OnceValues(func() (*yamlschema.Schema, error) {
	raw, err := schemas.FS.ReadFile(schemas.TestFile)
	if err != nil {
		return nil, err
	}
	return yamlschema.Compile("https://sourceos.dev/schemas/agent-machine-test.schema.json", raw)
})

// ParseTestFile reads a test.yaml: every problem is reported with its file, line and field.
func ParseTestFile(name string, data []byte) (*Tests, error) {
	errs := &yamlschema.Error{File: name}
	t := yamlschema.Read(data, testKind, errs)
	if t == nil {
		return nil, errs.OrNil()
	}
	if _, ok := t.Root.(map[string]any); !ok {
		errs.Add(t.Locate("").Line, "", "must be a YAML mapping with version: 1 and command: or commands:")
		return nil, errs.OrNil()
	}
	s, err := testSchema()
	if err != nil {
		return nil, err
	}
	s.Validate(t, errs)
	if len(errs.Problems) > 0 {
		return nil, errs.OrNil()
	}
	raw, err := json.Marshal(t.Root)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Command  string         `json:"command"`
		Commands []Step         `json:"commands"`
		Env      map[string]any `json:"env"`
		Version  json.Number    `json:"version"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	out := &Tests{}
	if doc.Command != "" {
		out.Steps = append(out.Steps, Step{Name: "command", Run: doc.Command})
	}
	seen := map[string]int{}
	for i, c := range doc.Commands {
		at := t.Locate(fmt.Sprintf("/commands/%d/name", i))
		if first, dup := seen[c.Name]; dup {
			errs.Add(at.Line, at.Field, "%q is the name of commands[%d] too; give each command its own name", c.Name, first)
		}
		if c.Name == "command" && doc.Command != "" {
			errs.Add(at.Line, at.Field, "\"command\" names the file's command: line; choose another name")
		}
		seen[c.Name] = i
		out.Steps = append(out.Steps, c)
	}
	if len(out.Steps) == 0 {
		errs.Add(1, "", "names no test to run; add command: (one shell command line) or commands: (a list of {name, run})")
	}
	for k := range doc.Env {
		at := t.Locate("/env/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k))
		if !envName.MatchString(k) {
			errs.Add(at.KeyLine, at.Field, "must be an environment variable name: letters, digits and '_', not starting with a digit")
		}
		// The value as written: YAML would make 1.20 a number 1.2 and 0755 the number 493.
		out.Env = append(out.Env, k+"="+at.Text)
	}
	sort.Strings(out.Env)
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return out, nil
}

// runner runs steps (name, command line pairs) in order (times to the millisecond where date
// has %N, else to the second), each with sh -c, saying on standard
// error which runs, then whether it passed and how long it took; it stops at the first
// failure with that step's exit code. Its report comes from inside the container, so it is
// only as trustworthy as the tests that share its output; the exit code is the container's.
const runner = `now() { t=$(date +%s%N 2>/dev/null); case $t in '' | *[!0-9]*) t=$(($(date +%s) * 1000000000)) ;; esac; echo "$t"; }
total=$(($# / 2)); n=0
while [ $# -ge 2 ]; do
  n=$((n + 1)); name=$1; run=$2; shift 2
  printf '==> [%d/%d] %s: %s\n' "$n" "$total" "$name" "$run" >&2
  start=$(now)
  sh -c "$run"; rc=$?
  ms=$((($(now) - start) / 1000000))
  took=$(printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)))
  if [ "$rc" -ne 0 ]; then
    printf '✗ %s failed (exit %d) after %s' "$name" "$rc" "$took" >&2
    [ "$n" -lt "$total" ] && printf '; %d step(s) after it did not run' $((total - n)) >&2
    printf '\n' >&2
    exit "$rc"
  fi
  printf '✓ %s passed in %s\n' "$name" "$took" >&2
done`

// Argv is the command that runs the steps in the container, with the test file's environment.
func (t *Tests) Argv() []string {
	var argv []string
	if len(t.Env) > 0 {
		argv = append([]string{"env"}, t.Env...) // names are checked: none starts with -
	}
	argv = append(argv, "/bin/sh", "-c", runner, "sourceosctl-test")
	for _, s := range t.Steps {
		argv = append(argv, s.Name, s.Run)
	}
	return argv
}

// EnvNames are the names the test file sets, for the evidence.
func (t *Tests) EnvNames() []string {
	var out []string
	for _, e := range t.Env {
		name, _, _ := strings.Cut(e, "=")
		out = append(out, name)
	}
	return out
}
