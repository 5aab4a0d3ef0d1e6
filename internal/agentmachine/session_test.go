package agentmachine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/guard"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// fakeEngine records calls and fails where told. Calls made for the tool probe's container
// are recorded with a "probe:" prefix, so a session's own calls read in order.
type fakeEngine struct {
	mu      sync.Mutex
	calls   []string
	image   container.Image
	present bool
	pullErr error
	weaken  func(*container.Observed)
	// weakenProbe changes what the server reports for the tool probe's container only;
	// weakenSidecar for the gateway sidecar's.
	weakenProbe   func(*container.Observed)
	weakenSidecar func(*container.Observed)
	created       map[string]container.Spec
	failAt        string
	exitCode      int
	probeOut      string
	// block makes Attach wait for ctx (a running session) instead of returning at once.
	block   bool
	secrets map[string][]byte
	// signalAt delivers a signal (cancels the session's context) when that call is made.
	signalAt string
	signal   func()
	// cancelled lists the calls that arrived with a cancelled context.
	cancelled []string
	// during plays the session's container while it runs, given its spec.
	during func(container.Spec)
	// volumes are the named volumes and what was imported into each; sidecarLog is what the
	// gateway sidecar leaves in its volume (none when nil), sidecarOut what it prints.
	volumes    map[string][]byte
	sidecarLog *string
	sidecarOut string
	stopped    map[string]chan struct{}
	// listed is what Containers answers.
	listed []container.Summary
	// verdict plays the helper: a container whose command is the helper's check prints its
	// pass verdict on standard error (a workspace's up waits for it).
	verdict bool
	// execSessions are a container's exec sessions as the server lists them; changes what
	// was written to each container's root file system beyond its mount points.
	execSessions []container.ExecSession
	changes      map[string][]string
}

// Exec plays a join: the helper's pass verdict (from the expectation's nonce), then the
// command's exit code (exitCode).
func (e *fakeEngine) Exec(ctx context.Context, id string, x container.Exec, _ io.Reader, out, errOut io.Writer) (int, error) {
	if err := e.record(ctx, "exec", id); err != nil {
		return -1, err
	}
	if len(x.Command) < 3 || x.Command[1] != "check" {
		return -1, fmt.Errorf("exec without the helper: %q", x.Command)
	}
	exp, err := guard.Decode(x.Command[2])
	if err != nil {
		return -1, err
	}
	if x.Created != nil {
		x.Created(fmt.Sprintf("exec-%d", len(e.calls)))
	}
	w := errOut
	if x.TTY {
		w = out
	}
	fmt.Fprintln(w, guard.PassLine(exp.Nonce))
	return e.exitCode, nil
}
func (e *fakeEngine) ExecSessions(ctx context.Context, id string, known map[string]bool) ([]container.ExecSession, error) {
	var out []container.ExecSession
	for _, x := range e.execSessions {
		if !known[x.ID] {
			out = append(out, x)
		}
	}
	return out, e.record(ctx, "execs", id)
}
func (e *fakeEngine) Changes(ctx context.Context, id string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{"A /run/sourceos-programs"}, e.changes[id]...), nil
}
func (e *fakeEngine) Usage(ctx context.Context, id string) (container.Usage, error) {
	return container.Usage{CPUPercent: 1.5, MemoryBytes: 64 << 20, MemoryLimit: 4 << 30, PIDs: 3}, e.record(ctx, "usage", id)
}
func (e *fakeEngine) VolumeExists(ctx context.Context, name string) (bool, error) {
	e.mu.Lock()
	_, ok := e.volumes[name]
	e.mu.Unlock()
	return ok, e.record(ctx, "volume?", "")
}
func (e *fakeEngine) CreateVolume(ctx context.Context, name string, _ map[string]string) error {
	e.mu.Lock()
	if e.volumes == nil {
		e.volumes = map[string][]byte{}
	}
	e.volumes[name] = nil
	e.mu.Unlock()
	return e.record(ctx, "volume+", "")
}
func (e *fakeEngine) ImportVolume(ctx context.Context, name, _ string, r io.Reader) error {
	b, _ := io.ReadAll(r)
	e.mu.Lock()
	e.volumes[name] = b
	e.mu.Unlock()
	return e.record(ctx, "import", "")
}
func (e *fakeEngine) ExportVolume(ctx context.Context, name, _ string, w io.Writer) error {
	if err := e.record(ctx, "export", ""); err != nil {
		return err
	}
	e.mu.Lock()
	imported := e.volumes[name]
	e.mu.Unlock()
	if len(imported) > 0 { // what was imported into it (the programs, a repository)
		_, err := w.Write(imported)
		return err
	}
	tw := tar.NewWriter(w)
	if e.sidecarLog != nil {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "egress.jsonl", Mode: 0o600, Size: int64(len(*e.sidecarLog))})
		_, _ = io.WriteString(tw, *e.sidecarLog)
	}
	return tw.Close()
}
func (e *fakeEngine) Volumes(ctx context.Context, label string) ([]container.VolumeSummary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []container.VolumeSummary
	for n := range e.volumes {
		out = append(out, container.VolumeSummary{Name: n})
	}
	return out, e.record(ctx, "volumes", "")
}
func (e *fakeEngine) RemoveVolume(ctx context.Context, name string) error {
	e.mu.Lock()
	delete(e.volumes, name)
	e.mu.Unlock()
	return e.record(ctx, "volume-", "")
}

// stopChan is closed when the container id is stopped: a sidecar waits for it.
func (e *fakeEngine) stopChan(id string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped == nil {
		e.stopped = map[string]chan struct{}{}
	}
	if e.stopped[id] == nil {
		e.stopped[id] = make(chan struct{})
	}
	return e.stopped[id]
}

func (e *fakeEngine) record(ctx context.Context, call, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if strings.HasSuffix(name, "-probe") {
		call = "probe:" + call
	}
	e.calls = append(e.calls, call)
	if ctx != nil && ctx.Err() != nil {
		e.cancelled = append(e.cancelled, call)
	}
	if e.signalAt == call && e.signal != nil {
		e.signal()
		return context.Canceled
	}
	if e.failAt == call {
		return errors.New(call + " failed")
	}
	return nil
}

func (e *fakeEngine) Service(ctx context.Context) (container.Service, error) {
	return container.Service{Version: "5.7.0", Rootless: true, CgroupsVersion: "v2"}, nil
}
func (e *fakeEngine) Image(ctx context.Context, _ string) (container.Image, bool, error) {
	return e.image, e.present, e.record(ctx, "image", "")
}
func (e *fakeEngine) Pull(ctx context.Context, _ string, _ io.Writer) error {
	if err := e.record(ctx, "pull", ""); err != nil {
		return err
	}
	if e.pullErr != nil {
		return e.pullErr
	}
	e.present = true
	return nil
}
func (e *fakeEngine) CreateSecret(ctx context.Context, name string, v []byte) error {
	e.mu.Lock()
	if e.secrets == nil {
		e.secrets = map[string][]byte{}
	}
	e.secrets[name] = v
	e.mu.Unlock()
	return e.record(ctx, "secret+", "")
}
func (e *fakeEngine) RemoveSecret(ctx context.Context, name string) error {
	e.mu.Lock()
	delete(e.secrets, name)
	e.mu.Unlock()
	return e.record(ctx, "secret-", "")
}
func (e *fakeEngine) Create(ctx context.Context, s container.Spec) (string, error) {
	e.mu.Lock()
	if e.created == nil {
		e.created = map[string]container.Spec{}
	}
	e.created[s.Name] = s
	e.mu.Unlock()
	return s.Name, e.record(ctx, "create", s.Name)
}

// Inspect reports what a faithful server would: the spec as created, unless weakened.
func (e *fakeEngine) Inspect(ctx context.Context, id string) (container.Observed, []byte, error) {
	e.mu.Lock()
	s := e.created[id]
	e.mu.Unlock()
	o := container.Applied(s)
	if e.weaken != nil {
		e.weaken(&o)
	}
	if e.weakenProbe != nil && strings.HasSuffix(id, "-probe") {
		e.weakenProbe(&o)
	}
	if e.weakenSidecar != nil && strings.HasSuffix(id, "-gateway") {
		e.weakenSidecar(&o)
	}
	return o, []byte(`{"Id":"` + id + `"}`), e.record(ctx, "inspect", id)
}
func (e *fakeEngine) Attach(ctx context.Context, id string, _ io.Reader, out, errOut io.Writer, ready chan bool) error {
	if err := e.record(ctx, "attach", id); err != nil {
		return err
	}
	ready <- true
	e.mu.Lock()
	cmd := e.created[id].Command
	e.mu.Unlock()
	if e.verdict && len(cmd) > 2 && cmd[1] == "check" {
		exp, err := guard.Decode(cmd[2])
		if err != nil {
			return err
		}
		fmt.Fprintln(errOut, guard.PassLine(exp.Nonce))
	}
	if strings.HasSuffix(id, "-gateway") {
		fmt.Fprint(out, e.sidecarOut)
		if strings.HasPrefix(e.sidecarOut, "ready ") { // else it failed to start and exited
			<-e.stopChan(id)
		}
		return nil
	}
	if strings.HasSuffix(id, "-probe") {
		fmt.Fprint(out, e.probeOut)
		return nil
	}
	if e.during != nil {
		e.mu.Lock()
		s := e.created[id]
		e.mu.Unlock()
		e.during(s)
	}
	if e.block {
		<-ctx.Done()
	}
	return nil
}
func (e *fakeEngine) Start(ctx context.Context, id string) error { return e.record(ctx, "start", id) }
func (e *fakeEngine) Wait(ctx context.Context, id string) (int, error) {
	if strings.HasSuffix(id, "-gateway") {
		if !strings.HasPrefix(e.sidecarOut, "ready ") {
			return 1, e.record(ctx, "wait", id)
		}
		<-e.stopChan(id)
		return 0, e.record(ctx, "wait", id)
	}
	if strings.HasSuffix(id, "-probe") {
		return 0, e.record(ctx, "wait", id)
	}
	return e.exitCode, e.record(ctx, "wait", id)
}
func (e *fakeEngine) Stop(ctx context.Context, id string, _ time.Duration) error {
	if strings.HasSuffix(id, "-gateway") {
		c := e.stopChan(id)
		e.mu.Lock()
		select {
		case <-c:
		default:
			close(c)
		}
		e.mu.Unlock()
	}
	return e.record(ctx, "stop", id)
}
func (e *fakeEngine) Remove(ctx context.Context, id string) error { return e.record(ctx, "remove", id) }
func (e *fakeEngine) Import(ctx context.Context, _ io.Reader, _ string, _ []string) (string, error) {
	return "sha256:collector", e.record(ctx, "import", "")
}

func (e *fakeEngine) Containers(context.Context, string, bool) ([]container.Summary, error) {
	return e.listed, nil
}

// sessionCalls are the calls made for the session's own container, in order.
func (e *fakeEngine) sessionCalls() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.calls {
		if !strings.HasPrefix(c, "probe:") {
			out = append(out, c)
		}
	}
	return strings.Join(out, " ")
}

func (e *fakeEngine) probeCalls() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.calls {
		if p, ok := strings.CutPrefix(c, "probe:"); ok {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// fakeGit reads a repository as clean at one commit, or as changed with a diff.
type fakeGit struct{ dirty bool }

func (g fakeGit) State(context.Context, string) fingerprint.GitState {
	return fingerprint.GitState{Commit: strings.Repeat("a", 40), Tree: strings.Repeat("b", 40), Branch: "main", Dirty: g.dirty, Reader: "git"}
}
func (g fakeGit) Diff(context.Context, string) []byte {
	if g.dirty {
		return []byte("diff --git a/x b/x\n")
	}
	return nil
}

// versionRunner answers --version for any program and counts how often it was asked.
type versionRunner struct {
	mu    sync.Mutex
	asked map[string]int
}

func (r *versionRunner) Run(_ context.Context, name string, _ ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.asked == nil {
		r.asked = map[string]int{}
	}
	r.asked[name]++
	return []byte(name + " version 1.0\n"), nil
}

// fakeBinaries finds every program as a file of its own under dir, so that version caching
// sees a stable binary whatever this host has installed.
func fakeBinaries(t *testing.T, dir string) func(string) (string, error) {
	t.Helper()
	return func(name string) (string, error) {
		p := filepath.Join(dir, "bin", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
				return "", err
			}
		}
		return p, nil
	}
}

// sessionEnv is a temporary home with a repository and a docs directory, a profile whose
// mounts are there, and a session wired to a fake engine.
type sessionEnv struct {
	home, repo, docs string
	profile          *profile.Profile
	session          *Session
	errOut           *bytes.Buffer
	engine           *fakeEngine
}

const sessionProfile = `apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: t}
spec:
  host: {os: linux}
  image: {ref: registry.example.com/team/agent:1}
  tools:
    codex: {enabled: true, secrets: [key]}
  secrets:
    - {name: key, fromEnv: OPENAI_API_KEY}
  mounts:
    - {source: ~/dev/docs, target: /docs, readOnly: true}
%s`

func newSessionEnv(t *testing.T, e *fakeEngine, env map[string]string, extra string) *sessionEnv {
	t.Helper()
	home := t.TempDir()
	se := &sessionEnv{home: home, repo: filepath.Join(home, "dev", "app"), docs: filepath.Join(home, "dev", "docs"), engine: e, errOut: &bytes.Buffer{}}
	for _, d := range []string{se.repo, se.docs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := profile.LoadBytes("p.yaml", []byte(fmt.Sprintf(sessionProfile, extra)), profile.Env{Home: home, WorkDir: home})
	if err != nil {
		t.Fatal(err)
	}
	se.profile = p
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	se.session = &Session{
		Connect: func(context.Context, machine.Ref) (Engine, Connection, error) {
			return e, Connection{URI: "unix:///run/user/1000/podman/podman.sock", Source: "rootless socket"}, nil
		},
		Host:    Host{OS: "linux", Arch: "amd64", UID: 1000, GID: 1000, Home: home, WorkDir: home, RuntimeDir: "/run/user/1000"},
		IO:      IO{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: se.errOut},
		Getenv:  func(k string) string { return env[k] },
		Environ: func() []string { return []string{"TERM=xterm", "API_TOKEN=not-a-real-token"} },
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(time.Millisecond)
			return clock
		},
		ReadFile:    os.ReadFile,
		Dirs:        Dirs{Config: filepath.Join(home, "cfg"), State: filepath.Join(home, "state"), Data: filepath.Join(home, "data")},
		TempDir:     filepath.Join(home, "tmp"),
		Git:         fakeGit{},
		Runner:      &versionRunner{},
		LookPath:    fakeBinaries(t, home),
		Version:     "1.2.3 (abc1234)",
		StopTimeout: time.Second,
	}
	return se
}

func (se *sessionEnv) run(t *testing.T, ctx context.Context, req SessionRequest) (*Result, error) {
	t.Helper()
	if req.Repo == "" {
		req.Repo = se.repo
	}
	return se.session.Run(ctx, se.profile, req)
}

// verified verifies the session's bundle with the session's key and returns its predicate.
func (se *sessionEnv) verified(t *testing.T, res *Result) *evidence.Predicate {
	t.Helper()
	if res.Bundle == "" {
		t.Fatalf("no bundle was written; stderr:\n%s", se.errOut)
	}
	_, pub := se.session.Dirs.SigningKeyPaths()
	v, err := evidence.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evidence.Verify(res.Bundle, v)
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	return got.Statement.Predicate
}

func (se *sessionEnv) log(t *testing.T, res *Result) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(res.Bundle, "artifacts", "session.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var pinned = container.Image{ID: "img", Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}

// stubProbe is what the tool probe prints for a codex binary.
var stubProbe = "codex 9.9.9\n" + strings.Repeat("c", 64) + "  /usr/local/bin/codex\n"

// TestSessionLivesItsPhasesInOrder: a successful session goes through every phase in the
// order DESIGN.md gives, leaves a verified bundle whose log says so, and removes what it made.
func TestSessionLivesItsPhasesInOrder(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true, probeOut: stubProbe}
	se := newSessionEnv(t, e, map[string]string{"OPENAI_API_KEY": "v"}, "")
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Secrets: []string{"key"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.sessionCalls(), "image secret+ volume? volume+ create inspect attach start wait inspect execs remove secret-"; got != want {
		t.Errorf("calls = %s\n want %s", got, want)
	}
	if got, want := e.probeCalls(), "create inspect attach start wait remove"; got != want {
		t.Errorf("tool probe calls = %s\n want %s", got, want)
	}
	p := se.verified(t, res)
	if p.Session.Outcome != "succeeded" || p.Tool.Version != "codex 9.9.9" || p.Tool.BinaryDigest != "sha256:"+strings.Repeat("c", 64) {
		t.Errorf("session %+v tool %+v", p.Session, p.Tool)
	}
	if p.Host.GitVersion != "git version 1.0" || p.Host.PodmanClient != "podman version 1.0" || p.Host.Kernel != fingerprint.KernelRelease() || p.Host.Kernel == "" {
		t.Errorf("host tools = %+v", p.Host)
	}
	log := se.log(t, res)
	order := []string{"planned", "image registry.example.com/team/agent:1 ready", "container", "created",
		"inspected: every security setting as planned", "repository state before the session: commit aaaa", "started", "exited with code 0",
		"recorded; clean-up follows: the container is removed, 1 ephemeral secret(s) removed"}
	at := 0
	for _, w := range order {
		i := strings.Index(log[at:], w)
		if i < 0 {
			t.Fatalf("session log lacks %q after position %d:\n%s", w, at, log)
		}
		at += i + len(w)
	}
	if len(e.secrets) != 0 {
		t.Errorf("secrets left: %v", e.secrets)
	}
}

// TestSessionCleansUpAfterAFailureAtEveryPhase fails each Podman call in turn: whatever was
// made is undone in reverse order, the session is still recorded (as failed), and the tool
// is never measured in an image that was not there.
func TestSessionCleansUpAfterAFailureAtEveryPhase(t *testing.T) {
	secret := SessionRequest{Tool: "codex", Secrets: []string{"key"}}
	tests := []struct {
		failAt, calls, outcome string
		ran                    bool
	}{
		{"image", "image", "failed", false},
		{"secret+", "image secret+ secret-", "failed", false},
		{"create", "image secret+ volume? volume+ create secret-", "failed", false},
		{"inspect", "image secret+ volume? volume+ create inspect remove secret-", "failed", false},
		{"attach", "image secret+ volume? volume+ create inspect attach remove secret-", "failed", false},
		{"start", "image secret+ volume? volume+ create inspect attach start remove secret-", "failed", false},
		{"wait", "image secret+ volume? volume+ create inspect attach start wait inspect execs remove secret-", "failed", true},
	}
	for _, tt := range tests {
		t.Run(tt.failAt, func(t *testing.T) {
			e := &fakeEngine{image: pinned, present: true, failAt: tt.failAt, probeOut: stubProbe}
			se := newSessionEnv(t, e, map[string]string{"OPENAI_API_KEY": "v"}, "")
			res, err := se.run(t, context.Background(), secret)
			if err == nil || !strings.Contains(err.Error(), tt.failAt+" failed") {
				t.Fatalf("error %v, want the %s failure", err, tt.failAt)
			}
			if got := e.sessionCalls(); got != tt.calls {
				t.Errorf("calls = %s\n want %s", got, tt.calls)
			}
			if len(e.secrets) != 0 {
				t.Errorf("secrets left: %v", e.secrets)
			}
			p := se.verified(t, res)
			if p.Session.Outcome != tt.outcome || p.Session.Ran != tt.ran || !strings.Contains(p.Session.Error, tt.failAt+" failed") {
				t.Errorf("recorded session %+v", p.Session)
			}
		})
	}
}

func TestSessionOutcomes(t *testing.T) {
	shell := SessionRequest{Tool: "shell"}
	tests := []struct {
		name    string
		engine  *fakeEngine
		pin     bool
		req     SessionRequest
		calls   string
		errRule string // policy rule of the expected refusal, or "error" for any other error
		exit    int
	}{
		{"the tool's exit code", &fakeEngine{image: pinned, present: true, exitCode: 9}, false, shell,
			"image create inspect attach start wait inspect execs remove", "", 9},
		{"a missing image is pulled", &fakeEngine{image: pinned}, false, shell,
			"image pull image create inspect attach start wait inspect execs remove", "", 0},
		{"a failed pull creates nothing", &fakeEngine{image: pinned, pullErr: errors.New("no registry")}, false, shell,
			"image pull", "error", 0},
		{"a pinned digest that differs is refused", &fakeEngine{image: container.Image{Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}, present: true}, true, shell,
			"image", RuleImageDigest, 0},
		{"a server that weakened the spec: removed before start", &fakeEngine{image: pinned, present: true, weaken: func(o *container.Observed) { o.CapAdd = []string{"NET_RAW"} }}, false, shell,
			"image create inspect remove", RuleServerWeakened, 0},
		{"an empty secret source: nothing created", &fakeEngine{image: pinned, present: true}, false, SessionRequest{Tool: "codex", Secrets: []string{"key"}},
			"image", "error", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			se := newSessionEnv(t, tt.engine, nil, "")
			if tt.pin {
				se.profile.Spec.Image.Digest = pinned.Digest
			}
			checkOutcome(t, se, tt.engine, tt.req, tt.calls, tt.errRule, tt.exit)
		})
	}
}

func checkOutcome(t *testing.T, se *sessionEnv, e *fakeEngine, req SessionRequest, calls, errRule string, exit int) {
	t.Helper()
	res, err := se.run(t, context.Background(), req)
	if got := e.sessionCalls(); got != calls {
		t.Errorf("calls = %s\n want %s", got, calls)
	}
	var re *policy.RefusedError
	var toolExit *ToolExitError
	switch {
	case exit != 0 && (!errors.As(err, &toolExit) || toolExit.Code != exit):
		t.Fatalf("error %v, want the tool's exit code %d", err, exit)
	case exit != 0:
	case errRule == "" && err != nil:
		t.Fatalf("error: %v", err)
	case errRule == "error" && err == nil:
		t.Fatal("no error")
	case errRule != "" && errRule != "error" && (!errors.As(err, &re) || re.Refusals[0].Rule != errRule):
		t.Fatalf("error %v, want a refusal by %s", err, errRule)
	}
	if res.Outcome == nil || res.Outcome.ExitCode != exit {
		t.Errorf("outcome %+v, want exit %d", res.Outcome, exit)
	}
	se.verified(t, res)
}

// TestALocalImageIsNeverPulled: a missing localhost/ image gets the build command as its
// fix, and no pull is attempted.
func TestALocalImageIsNeverPulled(t *testing.T) {
	e := &fakeEngine{}
	se := newSessionEnv(t, e, nil, "")
	se.profile.Spec.Image.Ref = "localhost/sourceos/agent-workspace:latest"
	_, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"})
	var missing *MissingError
	if !errors.As(err, &missing) || missing.Fix != BuildImageCommand+" (or name a published image in spec.image)" {
		t.Errorf("error %v, want a MissingError whose fix builds the image", err)
	}
	if got := e.sessionCalls(); got != "image" {
		t.Errorf("calls = %s", got)
	}
}

// TestAnInterruptedSessionStopsGracefullyAndKeepsTheToolsExitCode: the signal that ends the
// session must not cancel the stop it asks for, nor the wait for the tool's real exit code.
func TestAnInterruptedSessionStopsGracefullyAndKeepsTheToolsExitCode(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true, block: true, exitCode: 42}
	se := newSessionEnv(t, e, nil, "")
	ctx, cancel := context.WithCancelCause(context.Background())
	// The signal arrives once the tool runs (its container started), however slow the
	// machine: not after a fixed delay, which a loaded machine may not have reached start in.
	e.during = func(container.Spec) {
		go func() {
			for !strings.Contains(e.sessionCalls()+" ", " start ") {
				time.Sleep(time.Millisecond)
			}
			cancel(&Interrupt{Signal: "SIGTERM"})
		}()
	}
	res, err := se.run(t, ctx, SessionRequest{Tool: "shell"})
	var in *Interrupt
	if !errors.As(err, &in) || in.Signal != "SIGTERM" {
		t.Fatalf("error %v, want the interrupt", err)
	}
	if got := e.sessionCalls(); got != "image create inspect attach start stop wait inspect execs remove" {
		t.Errorf("calls = %s", got)
	}
	for _, c := range e.cancelled {
		if c == "stop" || c == "wait" {
			t.Errorf("%s was called with the cancelled context", c)
		}
	}
	p := se.verified(t, res)
	if !p.Session.Interrupted || p.Session.Cause != "SIGTERM" || p.Session.ExitCode == nil || *p.Session.ExitCode != 42 || p.Session.Outcome != "interrupted" {
		t.Errorf("recorded %+v, want interrupted by SIGTERM with the tool's exit code 42", p.Session)
	}
	if !strings.Contains(se.log(t, res), "interrupted by SIGTERM; exit code 42") {
		t.Errorf("session log:\n%s", se.log(t, res))
	}
}

// TestInterruptAtEveryPhase delivers SIGTERM during each Podman call: the session reports
// itself interrupted by SIGTERM, the container (once created) and the ephemeral secret are
// removed, and the interrupted session is recorded.
func TestInterruptAtEveryPhase(t *testing.T) {
	for _, phase := range []string{"pull", "secret+", "create", "inspect", "attach", "start"} {
		t.Run(phase, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			e := &fakeEngine{image: pinned, present: phase != "pull", signalAt: phase, block: true,
				signal: func() { cancel(&Interrupt{Signal: "SIGTERM"}) }}
			se := newSessionEnv(t, e, map[string]string{"OPENAI_API_KEY": "v"}, "")
			res, err := se.run(t, ctx, SessionRequest{Tool: "codex", Secrets: []string{"key"}})
			var in *Interrupt
			if !res.Outcome.Interrupted || res.Outcome.Cause != "SIGTERM" || !errors.As(err, &in) {
				t.Fatalf("outcome %+v, error %v: want interrupted by SIGTERM", res.Outcome, err)
			}
			calls := e.sessionCalls()
			if strings.Contains(calls, "create") && !strings.Contains(calls, "remove") {
				t.Errorf("created but not removed: %s", calls)
			}
			if len(e.secrets) != 0 {
				t.Errorf("secret left after an interrupt at %s: calls %s", phase, calls)
			}
			if p := se.verified(t, res); p.Session.Outcome != "interrupted" {
				t.Errorf("recorded %+v", p.Session)
			}
			if e.probeCalls() != "" {
				t.Errorf("an interrupted session measured its tool: %s", e.probeCalls())
			}
		})
	}
}

func TestSessionNeverLeaksTheSecretValue(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true, failAt: "start"}
	se := newSessionEnv(t, e, map[string]string{"OPENAI_API_KEY": "s3cr3t-value"}, "")
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex", Secrets: []string{"key"}})
	text := err.Error() + se.errOut.String()
	_ = filepath.Walk(res.Bundle, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			text += string(b)
		}
		return nil
	})
	if strings.Contains(text, "s3cr3t-value") {
		t.Fatal("the secret's value is in the output, the error or the bundle")
	}
}

// TestRecordingFallsBack: a profile's evidence directory that cannot take the bundle falls
// back to the default one, and that to a private directory in the temporary directory; with
// all three unusable the session fails with ErrNoEvidence. Each move is announced.
func TestRecordingFallsBack(t *testing.T) {
	block := func(t *testing.T, dir string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, []byte("a file where a directory should be"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		blocked []string // which of own, default, temp are unusable
		want    string   // where the bundle lands: own, default, temp or none
	}{
		{"the profile's own directory", nil, "own"},
		{"own unusable: the default one", []string{"own"}, "default"},
		{"own and default unusable: a private temporary one", []string{"own", "default"}, "temp"},
		{"none usable: the session fails", []string{"own", "default", "temp"}, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &fakeEngine{image: pinned, present: true}
			home := t.TempDir()
			own := filepath.Join(home, "own-evidence")
			se := newSessionEnv(t, e, nil, "  evidence: {dir: "+own+"}\n")
			se.session.Host.UID = os.Getuid() // the private temporary directory must be ours
			dirs := map[string]string{"own": own, "default": se.session.Dirs.EvidenceDir(),
				"temp": filepath.Join(se.session.TempDir, fmt.Sprintf("sourceosctl-evidence-%d", os.Getuid()))}
			for _, b := range tt.blocked {
				block(t, dirs[b])
			}
			res, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"})
			if tt.want == "none" {
				if !errors.Is(err, ErrNoEvidence) || res.Bundle != "" {
					t.Fatalf("error %v, bundle %q: want ErrNoEvidence and no bundle", err, res.Bundle)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Dir(res.Bundle) != dirs[tt.want] {
				t.Errorf("bundle in %s, want it in %s", filepath.Dir(res.Bundle), dirs[tt.want])
			}
			se.verified(t, res)
			for i, b := range tt.blocked {
				next := []string{"default", "temp"}[i]
				if !strings.Contains(se.errOut.String(), "cannot write evidence to "+dirs[b]) || !strings.Contains(se.errOut.String(), "writing it to "+dirs[next]) {
					t.Errorf("no warning naming %s and %s:\n%s", dirs[b], dirs[next], se.errOut)
				}
			}
		})
	}
}

// TestASessionThatCannotBeRecordedNeverStarts: an unusable signing key stops the session
// before Podman is asked for anything, and nothing is recorded.
func TestASessionThatCannotBeRecordedNeverStarts(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true}
	se := newSessionEnv(t, e, nil, "")
	priv, _ := se.session.Dirs.SigningKeyPaths()
	if err := os.MkdirAll(priv, 0o700); err != nil { // a directory where the key should be
		t.Fatal(err)
	}
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"})
	var h *HintError
	if !errors.As(err, &h) || !strings.Contains(err.Error(), "cannot sign this session's evidence, so it was not started") || !strings.HasPrefix(h.Fix, "check "+priv) {
		t.Fatalf("error %v", err)
	}
	if got := e.sessionCalls(); got != "" || res.Bundle != "" {
		t.Errorf("calls %q, bundle %q: want none", got, res.Bundle)
	}
}

// TestToolMeasurement: the tool is measured once per image (then cached), a failing probe
// is recorded as the reason rather than failing the session, and a shell has no version.
func TestToolMeasurement(t *testing.T) {
	t.Run("measured once per image", func(t *testing.T) {
		e := &fakeEngine{image: pinned, present: true, probeOut: stubProbe}
		se := newSessionEnv(t, e, nil, "")
		for i := 0; i < 2; i++ {
			res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"})
			if err != nil {
				t.Fatal(err)
			}
			if p := se.verified(t, res); p.Tool.Version != "codex 9.9.9" {
				t.Errorf("run %d: tool %+v", i, p.Tool)
			}
		}
		if got := e.probeCalls(); got != "create inspect attach start wait remove" {
			t.Errorf("probe calls over two sessions = %s, want one probe", got)
		}
	})
	t.Run("a failing probe is recorded, not raised", func(t *testing.T) {
		e := &fakeEngine{image: pinned, present: true, probeOut: "not found: codex\n"}
		se := newSessionEnv(t, e, nil, "")
		res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"})
		if err != nil {
			t.Fatal(err)
		}
		p := se.verified(t, res)
		if p.Tool.Version != "" || !strings.HasPrefix(p.Tool.VersionAbsent, "measuring the tool failed: codex --version in the image exited 0: not found: codex") {
			t.Errorf("tool %+v", p.Tool)
		}
	})
	t.Run("a weakened probe container never starts", func(t *testing.T) {
		e := &fakeEngine{image: pinned, present: true, probeOut: stubProbe}
		se := newSessionEnv(t, e, nil, "")
		e.weakenProbe = func(o *container.Observed) { o.Privileged = true }
		res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.probeCalls(); got != "create inspect remove" {
			t.Errorf("probe calls = %s", got)
		}
		if p := se.verified(t, res); !strings.Contains(p.Tool.VersionAbsent, "the server weakened the probe container: container is privileged") {
			t.Errorf("tool %+v", p.Tool)
		}
	})
	t.Run("a shell has no tool version", func(t *testing.T) {
		e := &fakeEngine{image: pinned, present: true}
		se := newSessionEnv(t, e, nil, "")
		res, err := se.run(t, context.Background(), SessionRequest{Tool: "shell", Args: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		if p := se.verified(t, res); p.Tool.VersionAbsent != "a shell session runs the image's shell; no tool version applies" || e.probeCalls() != "" {
			t.Errorf("tool %+v, probe calls %q", p.Tool, e.probeCalls())
		}
	})
}

// TestHostToolVersionsAreAskedOncePerBinary: git and podman are asked their versions by the
// first session only; later sessions read them from the cache while the binaries are unchanged.
func TestHostToolVersionsAreAskedOncePerBinary(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true}
	se := newSessionEnv(t, e, nil, "")
	runner := se.session.Runner.(*versionRunner)
	for i := 0; i < 3; i++ {
		res, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"})
		if err != nil {
			t.Fatal(err)
		}
		if p := se.verified(t, res); p.Host.PodmanClient != "podman version 1.0" || p.Host.GitVersion != "git version 1.0" {
			t.Errorf("session %d: host %+v", i, p.Host)
		}
	}
	if runner.asked["podman"] != 1 || runner.asked["git"] != 1 || len(runner.asked) != 2 {
		t.Errorf("asked %v, want git and podman once each over three sessions", runner.asked)
	}
}

// TestTheBundleRecordsTheChangedTree: a session that changed the repository records the
// state after it and the diff as a signed artifact.
func TestTheBundleRecordsTheChangedTree(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true}
	se := newSessionEnv(t, e, nil, "")
	se.session.Git = fakeGit{dirty: true}
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"})
	if err != nil {
		t.Fatal(err)
	}
	p := se.verified(t, res)
	diff, err := os.ReadFile(filepath.Join(res.Bundle, "artifacts", "worktree.diff"))
	if err != nil || !p.Git.After.Dirty || string(diff) != "diff --git a/x b/x\n" {
		t.Errorf("after %+v, diff %q (%v)", p.Git.After, diff, err)
	}
	sum := sha256.Sum256(diff)
	found := false
	st, _ := evidence.ReadUnverified(res.Bundle)
	for _, s := range st.Subject {
		if s.Name == "artifacts/worktree.diff" && s.Digest["sha256"] == hex.EncodeToString(sum[:]) {
			found = true
		}
	}
	if !found {
		t.Error("the diff is not a signed subject")
	}
}

// TestAWarningIsPrintedBeforeAReadOnlySession: root on a root-owned repository gets told,
// before the tool runs, that the session cannot write to it, and how to change that.
func TestAWarningIsPrintedBeforeAReadOnlySession(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs a root-owned repository: CI runs as root")
	}
	e := &fakeEngine{image: pinned, present: true}
	se := newSessionEnv(t, e, nil, "")
	se.session.Host.UID, se.session.Host.GID = 0, 0
	se.session.Connect = func(context.Context, machine.Ref) (Engine, Connection, error) {
		return rootful{e}, Connection{URI: "unix:///run/podman/podman.sock", Source: "rootful socket"}, nil
	}
	if _, err := se.run(t, context.Background(), SessionRequest{Tool: "shell"}); err != nil {
		t.Fatal(err)
	}
	want := "! the session runs as 1000:1000 (never root), which cannot write to " + se.repo + " (owned by root, mode -rwxr-xr-x)"
	if !strings.Contains(se.errOut.String(), want) || !strings.Contains(se.errOut.String(), "chown -R 1000:1000 "+se.repo) {
		t.Errorf("stderr:\n%s\nwant %q and the chown fix", se.errOut, want)
	}
}

type rootful struct{ *fakeEngine }

func (r rootful) Service(context.Context) (container.Service, error) {
	return container.Service{Version: "4.3.1", Rootless: false, CgroupsVersion: "v1"}, nil
}
