package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// testFactory returns a factory with a fake home and config dirs under t.TempDir(). It
// reaches no Podman service and sees no socket of this host: Stat reports every path
// absent and Engine refuses to connect (sessionFactory wires a real service in).
func testFactory(t testing.TB) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	home := t.TempDir()
	io, _, out, errOut := TestIO()
	env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "cfg"), "XDG_STATE_HOME": filepath.Join(home, "state")}
	f := &Factory{
		IO:      io,
		Getenv:  func(k string) string { return env[k] },
		Environ: func() []string { return []string{"TERM=xterm", "API_TOKEN=not-a-real-token"} },
		Now:     func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) },
		GOOS:    "linux",
		GOARCH:  "amd64",
		Home:    func() (string, error) { return home, nil },
		WorkDir: func() (string, error) { return home, nil },
		Build:   BuildInfo{Version: "1.2.3", Commit: "abc1234", GoVersion: "go1.26.8"},
		UID:     1000,
		GID:     1000,
		Runner:  podman.ExecRunner{},
		Stat: func(p string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		},
		EvalSymlinks: filepath.EvalSymlinks,
		ReadFile:     os.ReadFile,
		TempDir:      filepath.Join(home, "tmp"),
		LookPath:     exec.LookPath,
		Engine: func(_ context.Context, ep podman.Endpoint) (Engine, error) {
			return nil, &podman.UnreachableError{Endpoint: ep, Err: errors.New("this test reaches no Podman service")}
		},
	}
	return f, out, errOut
}

func run(t testing.TB, f *Factory, args ...string) int {
	t.Helper()
	return Run(context.Background(), f, args)
}

func TestHelpListsEverySubcommand(t *testing.T) {
	f, out, _ := testFactory(t)
	if code := run(t, f, "agent-machine", "--help"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, sub := range []string{"doctor", "init", "start", "stop", "status", "shell", "run", "fingerprint", "evidence"} {
		if !strings.Contains(out.String(), "\n  "+sub+" ") {
			t.Errorf("agent-machine --help does not list %s", sub)
		}
	}
	if !strings.Contains(out.String(), "Exit codes:") {
		t.Error("help does not document the exit codes")
	}
	out.Reset()
	run(t, f, "am", "evidence", "--help")
	for _, sub := range []string{"inspect", "verify"} {
		if !strings.Contains(out.String(), "\n  "+sub+" ") {
			t.Errorf("evidence --help does not list %s", sub)
		}
	}
}

// TestEveryCommandHasHelpAndExamples walks the tree so a new command cannot skip them.
func TestEveryCommandHasHelpAndExamples(t *testing.T) {
	f, _, _ := testFactory(t)
	root := NewRootCmd(f)
	am, _, _ := root.Find([]string{"agent-machine"})
	for _, c := range allCommands(am) {
		if c.Short == "" || c.Example == "" {
			t.Errorf("%s: Short %q, Example %q: every command needs a summary and examples", c.CommandPath(), c.Short, c.Example)
		}
	}
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		if sub.Name() != "help" {
			out = append(out, allCommands(sub)...)
		}
	}
	return out
}

func TestVersion(t *testing.T) {
	f, out, _ := testFactory(t)
	if code := run(t, f, "--version"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got, want := out.String(), "sourceosctl version 1.2.3 (commit abc1234, go1.26.8)\n"; got != want {
		t.Fatalf("--version = %q, want %q", got, want)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			f, out, _ := testFactory(t)
			if code := run(t, f, "completion", shell); code != 0 || !strings.Contains(out.String(), "sourceosctl") {
				t.Fatalf("exit %d, %d bytes", code, out.Len())
			}
		})
	}
	f, _, errOut := testFactory(t)
	if code := run(t, f, "completion", "tcsh"); code != ExitUsage {
		t.Fatalf("completion tcsh: exit %d, want %d (%s)", code, ExitUsage, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown subcommand", []string{"am", "launch"}, `Error: unknown command "launch" for "sourceosctl agent-machine"; run 'sourceosctl agent-machine --help' for the list`},
		{"unknown flag", []string{"am", "init", "--bogus"}, "Error: unknown flag: --bogus"},
		{"bad output", []string{"am", "doctor", "-o", "yaml"}, `Error: --output must be one of table, json, not "yaml"`},
		{"run without tool", []string{"am", "run", "--repo", "."}, "Error: --tool is required: name an enabled tool such as claude-code or codex"},
		{"init without repo", []string{"am", "init"}, "Error: --repo: is required: give the repository the profile is for\n  hint: sourceosctl agent-machine init --repo ~/dev/app"},
		{"init unknown example", []string{"am", "init", "--profile", "solaris", "--repo", "."}, `Error: --profile: "solaris" is neither a file nor an example; examples: linux-rootless, macos-podman, windows-wsl`},
		{"stray argument", []string{"am", "doctor", "now"}, `Error: unknown command "now" for "sourceosctl agent-machine doctor"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, errOut := testFactory(t)
			if code := run(t, f, tt.args...); code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if got := strings.TrimSpace(errOut.String()); got != tt.want {
				t.Errorf("stderr:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain", errors.New("boom"), 1},
		{"usage", usageErrorf("bad"), 2},
		{"wrapped usage", fmt.Errorf("x: %w", usageErrorf("bad")), 2},
		{"profile", &profile.LoadError{File: "p"}, 2},
		{"input", &agentmachine.InputError{Err: errors.New("x")}, 2},
		{"missing", &agentmachine.MissingError{Component: "podman"}, 4},
		{"no socket", &podman.NotFoundError{}, 4},
		{"unreachable", &podman.UnreachableError{Err: errors.New("refused")}, 4},
		{"tool exit", &ExitError{Code: 42}, 42},
		{"wrapped tool exit", fmt.Errorf("session: %w", &ExitError{Code: 7}), 7},
		{"the tool's own exit code", &agentmachine.ToolExitError{Code: 42}, 42},
		{"the tool's exit code joined with a recording failure", errors.Join(&agentmachine.ToolExitError{Code: 3}, agentmachine.ErrNoEvidence), 3},
		{"a refusal", &policy.RefusedError{}, 3},
		{"a runtime directory Podman cannot use", &podman.RuntimeDirError{Detail: "x"}, 4},
		{"SIGINT", &agentmachine.Interrupt{Signal: "SIGINT"}, 130},
		{"SIGTERM", fmt.Errorf("session: %w", &agentmachine.Interrupt{Signal: "SIGTERM"}), 143},
		{"bad connection URI", &podman.BadURIError{}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestInitWritesProfile(t *testing.T) {
	f, out, errOut := testFactory(t)
	home, _ := f.Home()
	repo := filepath.Join(home, "dev", "My_App")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	if code := run(t, f, "am", "init", "--profile", "linux-rootless", "--repo", "~/dev/My_App"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := filepath.Join(home, "cfg", "sourceos", "agent-machine", "profiles", "my-app.yaml")
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("printed %q, want the path %q", got, want)
	}
	st, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	p, err := profile.Load(want, profile.Env{Home: home})
	if err != nil {
		t.Fatalf("written profile does not load: %v", err)
	}
	if p.Metadata.Name != "my-app" || p.Spec.Workspace.Repo != repo {
		t.Errorf("name %q repo %q, want my-app and %s", p.Metadata.Name, p.Spec.Workspace.Repo, repo)
	}
	if len(p.Spec.Mounts) != 0 || !strings.Contains(errOut.String(), "left out mount ~/dev/shared-docs") {
		t.Errorf("the example's absent mount should be left out with a warning; mounts %v, stderr %s", p.Spec.Mounts, errOut)
	}
	before, _ := os.ReadFile(want)

	// A second init refuses to overwrite and leaves the file as it was.
	errOut.Reset()
	if code := run(t, f, "am", "init", "--profile", "linux-rootless", "--repo", repo, "--name", "my-app"); code != ExitUsage {
		t.Fatalf("second init: exit %d, want %d", code, ExitUsage)
	}
	if !strings.Contains(errOut.String(), "already exists; nothing was written") || !strings.Contains(errOut.String(), "hint: add --force") {
		t.Errorf("stderr = %s", errOut)
	}
	if after, _ := os.ReadFile(want); !bytes.Equal(before, after) {
		t.Error("the refused init changed the file")
	}
	// With --force it replaces it.
	if code := run(t, f, "am", "init", "--profile", "macos-podman", "--repo", repo, "--name", "my-app", "--force"); code != 0 {
		t.Fatalf("init --force: exit %d", code)
	}
	if after, _ := os.ReadFile(want); !bytes.Contains(after, []byte("os: darwin")) {
		t.Error("--force did not replace the file")
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	if len(entries) != 1 {
		t.Errorf("profiles dir holds %d entries, want 1 (no temp files left)", len(entries))
	}
}

func TestInitEveryExampleAndAFile(t *testing.T) {
	for _, src := range []string{"linux-rootless", "macos-podman", "windows-wsl", "file"} {
		t.Run(src, func(t *testing.T) {
			f, out, errOut := testFactory(t)
			home, _ := f.Home()
			if src == "file" {
				src = filepath.Join(home, "team.yaml")
				body := "apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: team}\nspec:\n  host: {os: linux}\n  image: {ref: localhost/x:1}\n"
				if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dest := filepath.Join(home, "out", "p.yaml")
			if code := run(t, f, "am", "init", "--profile", src, "--repo", home, "--out", dest); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if strings.TrimSpace(out.String()) != dest {
				t.Errorf("printed %q", out)
			}
			if _, err := profile.Load(dest, profile.Env{Home: home}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInitDryRunWritesNothing(t *testing.T) {
	f, out, errOut := testFactory(t)
	home, _ := f.Home()
	if code := run(t, f, "am", "init", "--repo", home, "--dry-run"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := profile.Parse("stdout", out.Bytes()); err != nil {
		t.Fatalf("dry run printed an invalid profile: %v", err)
	}
	if !strings.Contains(errOut.String(), "dry run: would write") {
		t.Errorf("stderr = %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(home, "cfg")); !os.IsNotExist(err) {
		t.Errorf("dry run created the config directory (stat err %v)", err)
	}
}

func TestInitRepoProblems(t *testing.T) {
	f, _, _ := testFactory(t)
	home, _ := f.Home()
	file := filepath.Join(home, "file")
	_ = os.WriteFile(file, nil, 0o644)
	tests := []struct{ repo, want string }{
		{filepath.Join(home, "nope"), "Error: --repo: " + filepath.Join(home, "nope") + " does not exist"},
		{file, "Error: --repo: " + file + " is not a directory"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.repo), func(t *testing.T) {
			f, _, errOut := testFactory(t)
			if code := run(t, f, "am", "init", "--repo", tt.repo); code != ExitUsage {
				t.Errorf("exit %d", code)
			}
			if got := strings.TrimSpace(errOut.String()); got != tt.want {
				t.Errorf("stderr:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

// TestImageStacksListsToolHosts: the hosts the gateway allows for each tool are visible, with
// their purpose and source, as a table and in the JSON.
func TestImageStacksListsToolHosts(t *testing.T) {
	f, out, errOut := testFactory(t)
	if code := run(t, f, "am", "image", "stacks"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, re := range []string{`claude-code\s+api\.anthropic\.com:443\s+api\s+yes\s+code\.claude\.com`, `claude-code\s+statsig\.anthropic\.com:443\s+telemetry\s+no`, `codex\s+api\.openai\.com:443\s+api\s+yes`} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("image stacks lacks %s:\n%s", re, out)
		}
	}
	f, out, _ = testFactory(t)
	if code := run(t, f, "am", "image", "stacks", "-o", "json"); code != 0 {
		t.Fatal(code)
	}
	var doc struct {
		Stacks    []json.RawMessage `json:"stacks"`
		ToolHosts map[string][]struct{ Host, Purpose, Source string }
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Stacks) == 0 || len(doc.ToolHosts["codex"]) == 0 || doc.ToolHosts["codex"][0].Source == "" {
		t.Errorf("json: %v %+v", err, doc)
	}
}

// TestInitPicksTheStackImage: the profile names the stack image of the repository's detected
// stack, or the one --stack names; a profile with an image of its own keeps it unless --stack
// says otherwise.
func TestInitPicksTheStackImage(t *testing.T) {
	team := "apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: team}\nspec:\n  host: {os: linux}\n  image: {ref: localhost/team/agent:1}\n"
	cases := []struct {
		name    string
		files   []string
		args    []string
		ref     string
		stderr  string
		profile string
	}{
		{"go detected", []string{"go.mod"}, nil, "localhost/sourceos/agent-workspace:go-1.19", "build it once with: sourceosctl agent-machine image build --stack go@1.19", ""},
		{"ruby detected", []string{"Gemfile"}, nil, "localhost/sourceos/agent-workspace:ruby-3.1", "Stack ruby", ""},
		{"several: the most files wins, the others named", []string{"go.mod", "package.json", "a.js", "b.js", "c.go"}, nil,
			"localhost/sourceos/agent-workspace:node-18", "also looks like go (1 files); chose node (2 files)", ""},
		{"nothing detected keeps the default image", []string{"README"}, nil, "localhost/sourceos/agent-workspace:latest", "", ""},
		{"--stack overrides detection", []string{"go.mod"}, []string{"--stack", "python@3.11"}, "localhost/sourceos/agent-workspace:python-3.11", "Stack python", ""},
		{"--stack none", []string{"go.mod"}, []string{"--stack", "none"}, "localhost/sourceos/agent-workspace:latest", "", ""},
		{"an image of the profile's own is kept", []string{"go.mod"}, nil, "localhost/team/agent:1", "looks like a go project; kept the profile's image localhost/team/agent:1", team},
		{"--stack replaces an image of the profile's own, saying so", []string{"go.mod"}, []string{"--stack", "go"}, "localhost/sourceos/agent-workspace:go-1.19", "--stack replaces the profile's image localhost/team/agent:1", team},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, _, errOut := testFactory(t)
			home, _ := f.Home()
			repo := filepath.Join(home, "repo")
			for _, name := range c.files {
				if err := os.MkdirAll(repo, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(repo, name), []byte("{}"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"am", "init", "--repo", repo, "--out", filepath.Join(home, "p.yaml")}
			if c.profile != "" {
				src := filepath.Join(home, "team.yaml")
				if err := os.WriteFile(src, []byte(c.profile), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--profile", src)
			}
			if code := run(t, f, append(args, c.args...)...); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			p, err := profile.Load(filepath.Join(home, "p.yaml"), profile.Env{Home: home})
			if err != nil {
				t.Fatal(err)
			}
			if p.Spec.Image.Ref != c.ref {
				t.Errorf("image %s, want %s", p.Spec.Image.Ref, c.ref)
			}
			if !strings.Contains(errOut.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, errOut)
			}
		})
	}
	f, _, errOut := testFactory(t)
	home, _ := f.Home()
	if code := run(t, f, "am", "init", "--repo", home, "--stack", "php", "--dry-run"); code != ExitUsage ||
		!strings.Contains(errOut.String(), `unknown stack "php"`) || !strings.Contains(errOut.String(), "ruby (3.1)") {
		t.Errorf("--stack php: exit %d, %s", code, errOut)
	}
}

// TestOfferBuildAsksOnlyForImagesImageBuildMakes: a missing stack image is offered for
// building on a terminal, and a "no" builds nothing; nothing is asked without a terminal, for
// an image of the user's own, or for another error.
func TestOfferBuildAsksOnlyForImagesImageBuildMakes(t *testing.T) {
	missing := func(ref string) error {
		return &agentmachine.MissingError{Component: "image " + ref, Detail: "not present"}
	}
	for _, c := range []struct {
		name  string
		tty   bool
		err   error
		asked string
	}{
		{"a stack image on a terminal", true, missing("localhost/sourceos/agent-workspace:go-1.19"), "Build it now (sourceosctl agent-machine image build --stack go@1.19)? [y/N] "},
		{"the IDE variant", true, missing("localhost/sourceos/agent-workspace:node-18_ide"), "(sourceosctl agent-machine image build --stack node@18 --ide)?"},
		{"no terminal", false, missing("localhost/sourceos/agent-workspace:go-1.19"), ""},
		{"an image of the user's own", true, missing("localhost/team/agent:1"), ""},
		{"another missing component", true, &agentmachine.MissingError{Component: "browser IDE"}, ""},
		{"no error", true, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _, errOut := testFactory(t)
			f.IO.InTTY = c.tty
			f.IO.In = strings.NewReader("n\n")
			built, err := offerBuild(context.Background(), f, &GlobalOptions{}, c.err)
			if built || err != nil {
				t.Fatalf("built %v, err %v after a no", built, err)
			}
			if got := errOut.String(); (c.asked == "") != (got == "") || !strings.Contains(got, c.asked) {
				t.Errorf("asked %q, want %q", got, c.asked)
			}
		})
	}
}
