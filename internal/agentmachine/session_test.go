package agentmachine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/policy"
)

// fakeEngine records calls and fails where told.
type fakeEngine struct {
	calls    []string
	image    container.Image
	present  bool
	pullErr  error
	weaken   func(*container.Observed)
	failAt   string
	exitCode int
	// block makes Attach wait for ctx (a running session) instead of returning at once.
	block   bool
	secrets map[string][]byte
	// signalAt delivers a signal (cancels the session's context) when that call is made.
	signalAt string
	signal   func()
}

func (e *fakeEngine) record(call string) error {
	e.calls = append(e.calls, call)
	if e.signalAt == call && e.signal != nil {
		e.signal()
		return context.Canceled
	}
	if e.failAt == call {
		return errors.New(call + " failed")
	}
	return nil
}

func (e *fakeEngine) Image(context.Context, string) (container.Image, bool, error) {
	return e.image, e.present, e.record("image")
}
func (e *fakeEngine) Pull(context.Context, string, io.Writer) error {
	if err := e.record("pull"); err != nil {
		return err
	}
	if e.pullErr != nil {
		return e.pullErr
	}
	e.present = true
	return nil
}
func (e *fakeEngine) CreateSecret(_ context.Context, name string, v []byte) error {
	if e.secrets == nil {
		e.secrets = map[string][]byte{}
	}
	e.secrets[name] = v
	return e.record("secret+")
}
func (e *fakeEngine) RemoveSecret(name string) error {
	delete(e.secrets, name)
	return e.record("secret-")
}
func (e *fakeEngine) Create(context.Context, container.Spec) (string, error) {
	return "c1", e.record("create")
}
func (e *fakeEngine) Inspect(_ context.Context, _ string) (container.Observed, []byte, error) {
	o := container.Observed{Init: true, CapDrop: []string{"ALL"}, ReadOnlyRoot: true, NoNewPrivileges: true, User: "1000:1000", UserNS: "keep-id",
		Network: "none", Binds: []container.Mount{{Source: "/home/u/dev/app", Target: "/workspace"}, {Source: "/home/u/dev/docs", Target: "/docs", ReadOnly: true}},
		Tmpfs: []string{"/tmp", "/home/agent"}, Limits: container.Limits{CPUs: 2, MemoryBytes: 4096 << 20, Pids: 1024}}
	if e.weaken != nil {
		e.weaken(&o)
	}
	return o, []byte("{}"), e.record("inspect")
}
func (e *fakeEngine) Attach(ctx context.Context, _ string, _ io.Reader, _, _ io.Writer, ready chan bool) error {
	if err := e.record("attach"); err != nil {
		return err
	}
	ready <- true
	if e.block {
		<-ctx.Done()
	}
	return nil
}
func (e *fakeEngine) Start(context.Context, string) error { return e.record("start") }
func (e *fakeEngine) Wait(context.Context, string) (int, error) {
	return e.exitCode, e.record("wait")
}
func (e *fakeEngine) Stop(context.Context, string, time.Duration) error { return e.record("stop") }
func (e *fakeEngine) Remove(string) error                               { return e.record("remove") }

func newSession(e *fakeEngine, env map[string]string) *Session {
	return &Session{Engine: e, In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{},
		Getenv: func(k string) string { return env[k] }, ReadFile: func(string) ([]byte, error) { return nil, errors.New("no files") },
		Now: time.Now, StopTimeout: time.Second}
}

// registryRef is a published image: sessions pull it when it is missing.
const registryRef = "registry.example.com/team/agent:1"

var pinned = container.Image{ID: "img", Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}

func TestSessionCallsAndCleanup(t *testing.T) {
	secretReq := SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}
	tests := []struct {
		name    string
		engine  fakeEngine
		req     SessionRequest
		env     map[string]string
		calls   string
		errRule string // policy rule of the expected refusal, or "error" for any other error
		exit    int
	}{
		{"success", fakeEngine{image: pinned, present: true}, secretReq, map[string]string{"OPENAI_API_KEY": "v"},
			"image secret+ create inspect attach start wait remove secret-", "", 0},
		{"tool exit code", fakeEngine{image: pinned, present: true, exitCode: 9}, SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, nil,
			"image create inspect attach start wait remove", "", 9},
		{"missing image is pulled", fakeEngine{image: pinned}, SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, nil,
			"image pull image create inspect attach start wait remove", "", 0},
		{"pull fails: nothing created", fakeEngine{image: pinned, pullErr: errors.New("no registry")}, SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, nil,
			"image pull", "error", 0},
		{"pinned digest differs", fakeEngine{image: container.Image{Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}, present: true}, SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, nil,
			"image", RuleImageDigest, 0},
		{"weakened by the server: removed before start", fakeEngine{image: pinned, present: true, weaken: func(o *container.Observed) { o.CapAdd = []string{"NET_RAW"} }}, secretReq, map[string]string{"OPENAI_API_KEY": "v"},
			"image secret+ create inspect remove secret-", RuleServerWeakened, 0},
		{"start fails: container and secret removed", fakeEngine{image: pinned, present: true, failAt: "start"}, secretReq, map[string]string{"OPENAI_API_KEY": "v"},
			"image secret+ create inspect attach start remove secret-", "error", 0},
		{"empty secret source: nothing created", fakeEngine{image: pinned, present: true}, secretReq, nil,
			"image", "error", 0},
		{"missing local image: build hint, never fetched", fakeEngine{image: pinned}, SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, nil,
			"image", "error", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := mustPlan(t, "", tt.req, testFacts())
			if strings.Contains(tt.name, "pull") {
				pl.Image.Ref = registryRef // localhost/ images are never pulled
			}
			e := tt.engine
			out, err := newSession(&e, tt.env).Run(context.Background(), pl)
			var missing *MissingError
			if strings.Contains(tt.name, "missing local") && (!errors.As(err, &missing) || missing.Fix != BuildImageCommand+" (or name a published image in spec.image)") {
				t.Errorf("error %v, want a MissingError whose fix builds the image", err)
			}
			if got := strings.Join(e.calls, " "); got != tt.calls {
				t.Errorf("calls = %s\n want %s", got, tt.calls)
			}
			if len(e.secrets) != 0 {
				t.Errorf("secrets left: %v", e.secrets)
			}
			var re *policy.RefusedError
			switch {
			case tt.errRule == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tt.errRule == "error" && err == nil:
				t.Fatal("no error")
			case tt.errRule != "" && tt.errRule != "error" && (!errors.As(err, &re) || re.Refusals[0].Rule != tt.errRule):
				t.Fatalf("error %v, want a refusal by %s", err, tt.errRule)
			}
			if out == nil || out.ExitCode != tt.exit {
				t.Errorf("outcome %+v, want exit %d", out, tt.exit)
			}
		})
	}
}

func TestSessionInterruptStopsAndRemoves(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true, block: true, exitCode: 143}
	pl := mustPlan(t, "", SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, testFacts())
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(&Interrupt{Signal: "SIGTERM"}) })
	out, err := newSession(e, nil).Run(ctx, pl)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Interrupted || out.Cause != "SIGTERM" || !out.Ran {
		t.Errorf("outcome %+v, want interrupted by SIGTERM after the tool ran", out)
	}
	if got := strings.Join(e.calls, " "); got != "image create inspect attach start stop wait remove" {
		t.Errorf("calls = %s", got)
	}
}

func TestSessionNeverLeaksTheSecretValue(t *testing.T) {
	e := &fakeEngine{image: pinned, present: true, failAt: "start"}
	pl := mustPlan(t, "", SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}, testFacts())
	s := newSession(e, map[string]string{"OPENAI_API_KEY": "s3cr3t-value"})
	_, err := s.Run(context.Background(), pl)
	text := err.Error() + s.ErrOut.(*bytes.Buffer).String() + s.Out.(*bytes.Buffer).String()
	if strings.Contains(text, "s3cr3t-value") {
		t.Fatalf("secret value in output or error: %s", text)
	}
}

// TestInterruptAtEveryPhase delivers SIGTERM during each Podman call: the session reports
// itself interrupted by SIGTERM, the container (once created) is removed, and the ephemeral
// secret is removed.
func TestInterruptAtEveryPhase(t *testing.T) {
	for _, phase := range []string{"pull", "secret+", "create", "inspect", "attach", "start"} {
		t.Run(phase, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			e := &fakeEngine{image: pinned, present: phase != "pull", signalAt: phase, block: true,
				signal: func() { cancel(&Interrupt{Signal: "SIGTERM"}) }}
			pl := mustPlan(t, "", SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}, testFacts())
			pl.Image.Ref = registryRef
			out, err := newSession(e, map[string]string{"OPENAI_API_KEY": "v"}).Run(ctx, pl)
			var in *Interrupt
			if !out.Interrupted || out.Cause != "SIGTERM" || !errors.As(err, &in) {
				t.Fatalf("outcome %+v, error %v: want interrupted by SIGTERM", out, err)
			}
			calls := strings.Join(e.calls, " ")
			if strings.Contains(calls, "create") && !strings.HasSuffix(strings.TrimSuffix(calls, " secret-"), "remove") {
				t.Errorf("created but not removed: %s", calls)
			}
			if len(e.secrets) != 0 {
				t.Errorf("secret left after an interrupt at %s: calls %s", phase, calls)
			}
		})
	}
}
