package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podman"
)

// fakeEngine is a Podman service that runs every container instantly with exitCode. Methods
// a session does not use are left to the embedded nil interface (calling one panics).
type fakeEngine struct {
	Engine
	mu       sync.Mutex
	calls    []string
	exitCode int
	created  map[string]container.Spec
	absent   bool // Image finds nothing
}

func (e *fakeEngine) call(c string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, c)
}

func (e *fakeEngine) ExecSessions(context.Context, string, map[string]bool) ([]container.ExecSession, error) {
	e.call("execs")
	return nil, nil
}

func (e *fakeEngine) Service(context.Context) (container.Service, error) {
	e.call("service")
	return container.Service{Version: "5.7.0", Rootless: true, CgroupsVersion: "v2"}, nil
}
func (e *fakeEngine) Image(context.Context, string) (container.Image, bool, error) {
	e.call("image")
	return container.Image{ID: "0123456789ab", Digest: "sha256:" + strings.Repeat("0", 64)}, !e.absent, nil
}
func (e *fakeEngine) Create(_ context.Context, s container.Spec) (string, error) {
	e.call("create")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.created == nil {
		e.created = map[string]container.Spec{}
	}
	e.created[s.Name] = s
	return s.Name, nil
}
func (e *fakeEngine) Inspect(_ context.Context, id string) (container.Observed, []byte, error) {
	e.call("inspect")
	e.mu.Lock()
	s := e.created[id]
	e.mu.Unlock()
	o := container.Applied(s)
	return o, []byte(`{}`), nil
}
func (e *fakeEngine) Attach(_ context.Context, id string, _ io.Reader, out, _ io.Writer, ready chan bool) error {
	e.call("attach")
	ready <- true
	if strings.HasSuffix(id, "-probe") {
		_, _ = io.WriteString(out, "codex 1.0\n"+strings.Repeat("e", 64)+"  /usr/bin/codex\n")
	}
	return nil
}
func (e *fakeEngine) Start(context.Context, string) error { e.call("start"); return nil }
func (e *fakeEngine) Wait(_ context.Context, id string) (int, error) {
	e.call("wait")
	if strings.HasSuffix(id, "-probe") {
		return 0, nil
	}
	return e.exitCode, nil
}
func (e *fakeEngine) Remove(context.Context, string) error { e.call("remove"); return nil }

// The tool's state volume: absent, then made.
func (e *fakeEngine) VolumeExists(context.Context, string) (bool, error) {
	e.call("volume?")
	return false, nil
}
func (e *fakeEngine) CreateVolume(context.Context, string, map[string]string) error {
	e.call("volume+")
	return nil
}

// fakeFactory is a test factory whose Podman is the fake, reached through CONTAINER_HOST, with
// a repository in its home.
func fakeFactory(t *testing.T, e *fakeEngine) (*Factory, string, *strings.Builder, *strings.Builder) {
	t.Helper()
	f, out, errOut := testFactory(t)
	home, _ := f.Home()
	repo := filepath.Join(home, "dev", "app")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := f.Getenv
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return "unix:///fake/podman.sock"
		}
		return getenv(k)
	}
	f.Engine = func(context.Context, podman.Endpoint) (Engine, error) { return e, nil }
	o, eo := &strings.Builder{}, &strings.Builder{}
	f.IO.Out, f.IO.ErrOut = io.MultiWriter(out, o), io.MultiWriter(errOut, eo)
	return f, repo, o, eo
}

const fakeProfile = "apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: t}\nspec:\n  host: {os: linux}\n  image: {ref: localhost/x:1}\n  tools: {codex: {enabled: true}}\n"

func writeFakeProfile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(p, []byte(fakeProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSessionCommands runs shell and run through the command line against the fake engine:
// exit codes, what is printed where, and what the evidence says.
func TestSessionCommands(t *testing.T) {
	prof := writeFakeProfile(t)
	tests := []struct {
		name     string
		args     []string
		exitCode int // the tool's
		code     int // sourceosctl's
		stderr   []string
		stdout   []string
		calls    string // the session's own calls, probe excluded; "" to skip
	}{
		{name: "a shell command that succeeds", args: []string{"shell", "--", "true"}, code: 0,
			stderr: []string{"evidence: "}, calls: "service image create inspect attach start wait inspect execs remove"},
		{name: "the tool's exit code is sourceosctl's, silently", args: []string{"shell", "--", "false"}, exitCode: 7, code: 7,
			stderr: []string{"evidence: "}},
		{name: "a dry run asks the service for facts only", args: []string{"run", "--tool", "codex", "--dry-run", "-o", "json"}, code: 0,
			stdout: []string{`"schemaVersion": "sourceos.dev/agent-machine-plan/v1"`, `"rootless": true`}, stderr: []string{"dry run: nothing was created"}, calls: "service"},
		{name: "a refused session prints every mount's verdict and creates nothing", args: []string{"shell", "--repo", "~"}, code: ExitRefused,
			stderr: []string{"REFUSE   workspace", "Error: refused by policy:"}, calls: "service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &fakeEngine{exitCode: tt.exitCode}
			f, repo, out, errOut := fakeFactory(t, e)
			args := append([]string{"--profile", prof, "am", tt.args[0], "--repo", repo}, tt.args[1:]...)
			if code := run(t, f, args...); code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tt.exitCode != 0 && strings.Contains(errOut.String(), "Error:") {
				t.Errorf("a tool's own failure printed an error line:\n%s", errOut)
			}
			if tt.calls != "" {
				if got := strings.Join(e.calls, " "); !strings.HasPrefix(got, tt.calls) {
					t.Errorf("calls %s, want them to begin %s", got, tt.calls)
				}
			}
		})
	}
}

// TestSessionCommandRecordsWhatRan: the bundle a command-line session leaves verifies with
// the host's key and says what ran.
func TestSessionCommandRecordsWhatRan(t *testing.T) {
	e := &fakeEngine{}
	f, repo, _, errOut := fakeFactory(t, e)
	f.Now = func() time.Time { return time.Now() }
	if code := run(t, f, "--profile", writeFakeProfile(t), "am", "run", "--tool", "codex", "--repo", repo, "--", "exec", "hi"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	bundle := ""
	for _, l := range strings.Split(errOut.String(), "\n") {
		if b, ok := strings.CutPrefix(l, "evidence: "); ok {
			bundle = b
		}
	}
	dirs, _ := f.Dirs()
	_, pub := dirs.SigningKeyPaths()
	v, err := evidence.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evidence.Verify(bundle, v)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Statement.Predicate
	if p.Tool.Name != "codex" || p.Tool.Version != "codex 1.0" || strings.Join(p.Command, " ") != `codex --sandbox danger-full-access exec hi` || p.Session.Outcome != "succeeded" {
		t.Errorf("predicate tool %+v command %v session %+v", p.Tool, p.Command, p.Session)
	}
}

// TestDryRunNeedsNoPodman: with no service reachable, a dry run still plans (saying rootless
// was assumed) while the real run stops with exit 4 and the command that starts one.
func TestDryRunNeedsNoPodman(t *testing.T) {
	prof := writeFakeProfile(t)
	f, out, errOut := testFactory(t)
	repo := t.TempDir()
	if code := run(t, f, "--profile", prof, "am", "shell", "--repo", repo, "--dry-run"); code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out.String(), "Rootless           true (assumed)") || !strings.Contains(out.String(), "Connection         - (none found)") {
		t.Errorf("plan:\n%s", out)
	}
	f, _, errOut = testFactory(t)
	if code := run(t, f, "--profile", prof, "am", "shell", "--repo", repo, "--", "true"); code != ExitMissing || !strings.Contains(errOut.String(), "hint: sourceosctl agent-machine start") {
		t.Errorf("real run: exit %d: %s", code, errOut)
	}
}

var _ agentmachine.Engine = (*fakeEngine)(nil)

// TestDryRunFailsWhereTheRealRunDoes: each input a probe found the dry run passing and the
// real run refusing — an image not built here, an image other than the pinned one, a signing
// key that is not one or is a dangling link, a secret whose source is unset, unreadable or a
// program that is not installed — fails both, with the same exit code and message, and the
// dry run runs no command and writes no key.
func TestDryRunFailsWhereTheRealRunDoes(t *testing.T) {
	withSecret := func(source string) string {
		return strings.Replace(fakeProfile, "tools: {codex: {enabled: true}}", "tools: {codex: {enabled: true, secrets: [tok]}}\n  secrets:\n    - name: tok\n      target: TOK\n      "+source, 1)
	}
	for _, c := range []struct {
		name, profile string
		absent        bool
		key           func(t *testing.T, priv string)
		code          int
		says          string
	}{
		{name: "a localhost image not built here", profile: fakeProfile, absent: true, code: ExitMissing, says: "not present; localhost/ images are built on this host"},
		{name: "an image other than the pinned digest", profile: strings.Replace(fakeProfile, "image: {ref: localhost/x:1}", "image: {ref: localhost/x:1, digest: sha256:"+strings.Repeat("1", 64)+"}", 1), code: ExitRefused, says: "the profile pins sha256:111"},
		{name: "a signing key that is not a key", profile: fakeProfile, code: ExitFailure, says: "not a PEM file", key: func(t *testing.T, priv string) {
			if err := os.WriteFile(priv, []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a signing key that is a dangling link", profile: fakeProfile, code: ExitFailure, says: "which does not exist", key: func(t *testing.T, priv string) {
			if err := os.Symlink(filepath.Join(filepath.Dir(priv), "gone.pem"), priv); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a secret from an unset variable", profile: withSecret("fromEnv: SOSCTL_TEST_UNSET_VAR"), code: ExitUsage, says: "env:SOSCTL_TEST_UNSET_VAR is empty or unset"},
		{name: "a secret from a missing file", profile: withSecret("fromFile: /nonexistent/sourceosctl-secret"), code: ExitUsage, says: "cannot read its source file /nonexistent/sourceosctl-secret"},
		{name: "a secret from a program not installed", profile: withSecret("fromCommand: [sourceosctl-no-such-program, token]"), code: ExitUsage, says: "sourceosctl-no-such-program"},
	} {
		t.Run(c.name, func(t *testing.T) {
			prof := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(prof, []byte(c.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, dry := range []bool{true, false} {
				e := &fakeEngine{absent: c.absent}
				f, repo, out, errOut := fakeFactory(t, e)
				dirs, _ := f.Dirs()
				priv, _ := dirs.SigningKeyPaths()
				if c.key != nil {
					if err := os.MkdirAll(filepath.Dir(priv), 0o700); err != nil {
						t.Fatal(err)
					}
					c.key(t, priv)
				}
				args := []string{"--profile", prof, "am", "run", "--tool", "codex", "--repo", repo}
				if strings.Contains(c.profile, "name: tok") {
					args = append(args, "--secret", "tok")
				}
				if dry {
					args = append(args, "--dry-run")
				}
				if code := run(t, f, args...); code != c.code || !strings.Contains(errOut.String(), c.says) {
					t.Errorf("dry run %v: exit %d, want %d saying %q\nstdout:\n%s\nstderr:\n%s", dry, code, c.code, c.says, out, errOut)
				}
				if dry && slices.Contains(e.calls, "create") {
					t.Errorf("the dry run created a container: %v", e.calls)
				}
				if _, err := os.Lstat(priv); dry && c.key == nil && err == nil {
					t.Errorf("the dry run wrote a signing key")
				}
			}
		})
	}
}

// TestASigningKeyOthersCanReadIsWarnedAbout: a session signs with a key others can read (mode
// 0644), and says so with the fix (doctor fails on it).
func TestASigningKeyOthersCanReadIsWarnedAbout(t *testing.T) {
	prof := writeFakeProfile(t)
	f, repo, _, errOut := fakeFactory(t, &fakeEngine{})
	if code := run(t, f, "--profile", prof, "am", "shell", "--repo", repo, "--", "true"); code != 0 {
		t.Fatalf("first session: exit %d: %s", code, errOut)
	}
	dirs, _ := f.Dirs()
	priv, _ := dirs.SigningKeyPaths()
	if err := os.Chmod(priv, 0o644); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errOut.String(), "can be read by others") {
		t.Fatalf("a key made 0600 was warned about:\n%s", errOut)
	}
	if code := run(t, f, "--profile", prof, "am", "shell", "--repo", repo, "--", "true"); code != 0 || !strings.Contains(errOut.String(), "can be read by others (mode -rw-r--r--): chmod 600 "+priv) {
		t.Errorf("exit %d, want the warning:\n%s", code, errOut)
	}
}
