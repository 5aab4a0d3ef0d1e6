package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/policy"
)

// Engine is what a session needs from Podman. internal/podman's Client implements it; unit
// tests use a fake.
type Engine interface {
	Image(ctx context.Context, ref string) (container.Image, bool, error)
	Pull(ctx context.Context, ref string, progress io.Writer) error
	CreateSecret(ctx context.Context, name string, value []byte) error
	RemoveSecret(name string) error
	Create(ctx context.Context, spec container.Spec) (string, error)
	Inspect(ctx context.Context, id string) (container.Observed, []byte, error)
	Attach(ctx context.Context, id string, in io.Reader, out, errOut io.Writer, ready chan bool) error
	Start(ctx context.Context, id string) error
	Wait(ctx context.Context, id string) (int, error)
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(id string) error
}

// Session executes a Plan.
type Session struct {
	Engine   Engine
	In       io.Reader
	Out      io.Writer
	ErrOut   io.Writer
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
	Now      func() time.Time
	// StopTimeout is how long a stopping container gets before it is killed.
	StopTimeout time.Duration
	// ForceRemove removes a container without the API, for when the service died during
	// the session (nil when there is no such way, e.g. a remote service).
	ForceRemove func(id string) error
}

// Outcome is what happened in a session: everything evidence needs about the run.
type Outcome struct {
	ContainerID string          `json:"containerId,omitempty"`
	Image       container.Image `json:"image"`
	ExitCode    int             `json:"exitCode"`
	Started     time.Time       `json:"started"`
	Ended       time.Time       `json:"ended"`
	// Interrupted is set when a signal ended the session; Cause says which.
	Interrupted bool   `json:"interrupted"`
	Cause       string `json:"cause,omitempty"`
	// Inspect is `podman inspect` of the container as created.
	Inspect []byte `json:"-"`
	// Ran is true once the container started: the exit code is the tool's.
	Ran bool `json:"ran"`
	// Events is the session log: what happened, when.
	Events []Event `json:"events"`
}

// Event is one line of the session log.
type Event struct {
	Time time.Time `json:"time"`
	What string    `json:"what"`
}

func (s *Session) event(out *Outcome, format string, args ...any) {
	out.Events = append(out.Events, Event{Time: s.Now().UTC(), What: fmt.Sprintf(format, args...)})
}

// Interrupt is the cancellation cause set when a signal arrives.
type Interrupt struct{ Signal string }

func (i *Interrupt) Error() string { return "interrupted by " + i.Signal }

// Rules the session itself can refuse by.
const (
	RuleImageDigest    = "image-digest-pinned"
	RuleServerWeakened = "server-weakened-spec"
)

// Run executes the plan: image, secrets, create, verify, attach, start, wait, clean up. The
// container and the ephemeral secrets are removed however the session ends (unless Keep, for
// the container), and a non-nil Outcome is returned whenever the policy allowed the session.
func (s *Session) Run(ctx context.Context, pl *Plan) (*Outcome, error) {
	out := &Outcome{Started: s.Now().UTC()}
	defer func() { out.Ended = s.Now().UTC() }()

	s.event(out, "session %s planned: %s, policy %s", pl.SessionID, pl.Container.Name, pl.PolicyHash)
	img, err := s.ensureImage(ctx, pl)
	out.Image = img
	if err != nil {
		err = interrupted(ctx, out, err)
		s.event(out, "image %s: %v", pl.Image.Ref, err)
		return out, err
	}
	s.event(out, "image %s ready: id %s", pl.Image.Ref, img.ID)
	spec := pl.Container
	spec.Env = copyEnv(spec.Env)
	for _, name := range pl.PassEnv {
		if v := s.Getenv(name); v != "" {
			spec.Env[name] = v
		}
	}
	created, err := s.createSecrets(ctx, pl)
	defer func() { s.removeSecrets(created); s.event(out, "ephemeral secrets removed: %d", len(created)) }()
	if err != nil {
		err = interrupted(ctx, out, err)
		s.event(out, "secrets: %v", err)
		return out, err
	}
	id, err := s.Engine.Create(ctx, spec)
	if err != nil {
		s.event(out, "create failed: %v", err)
		if ctx.Err() != nil {
			// The server may have created it before the request was cancelled: remove it by
			// its name, which is ours and unique.
			if rmErr := s.Engine.Remove(spec.Name); rmErr == nil {
				s.event(out, "container %s removed after the interrupted create", spec.Name)
			}
		}
		return out, interrupted(ctx, out, err)
	}
	out.ContainerID = id
	s.event(out, "container %s created", short(id))
	keep := pl.Keep
	defer func() {
		if !keep {
			rmErr := s.Engine.Remove(id)
			if rmErr != nil && s.ForceRemove != nil {
				s.event(out, "remove through the API failed (%v); removing with the podman CLI", cause.Root(rmErr))
				rmErr = s.ForceRemove(id)
			}
			if rmErr != nil {
				fmt.Fprintf(s.ErrOut, "! %v\n", rmErr)
				s.event(out, "remove failed: %v", rmErr)
			} else {
				s.event(out, "container removed")
			}
		}
	}()
	observed, raw, err := s.Engine.Inspect(ctx, id)
	if err != nil {
		return out, interrupted(ctx, out, err)
	}
	out.Inspect = raw
	if diffs := container.Verify(spec, observed); len(diffs) > 0 {
		keep = false // never leave a weakened container behind
		s.event(out, "refused to start: the server weakened the spec: %s", strings.Join(diffs, "; "))
		return out, &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "container " + spec.Name, Rule: RuleServerWeakened,
			Reason: "the Podman service did not apply the plan: " + strings.Join(diffs, "; "),
			Fix:    "upgrade Podman, or use another connection (--connection); the container was removed before it started",
		}}}
	}
	s.event(out, "inspected: every security setting as planned")
	err = s.attachAndWait(ctx, id, out)
	switch {
	case out.Interrupted:
		s.event(out, "interrupted by %s; exit code %d", out.Cause, out.ExitCode)
	case err != nil:
		s.event(out, "failed: %v", err)
	case out.Ran:
		s.event(out, "exited with code %d", out.ExitCode)
	}
	return out, err
}

func (s *Session) ensureImage(ctx context.Context, pl *Plan) (container.Image, error) {
	ref := pl.Image.Ref
	img, found, err := s.Engine.Image(ctx, ref)
	if err != nil {
		return img, err
	}
	if !found && IsLocalRef(ref) {
		return img, &MissingError{Component: "image " + ref, Detail: "not present; localhost/ images are built on this host, never pulled",
			Fix: BuildImageCommand + " (or name a published image in spec.image)"}
	}
	if !found {
		fmt.Fprintf(s.ErrOut, "Pulling %s …\n", ref)
		if err := s.Engine.Pull(ctx, ref, s.ErrOut); err != nil {
			return img, &MissingError{Component: "image " + ref, Detail: fmt.Sprintf("not present locally and the pull failed: %v", err),
				Fix: "sourceosctl agent-machine image pull (tries the profile's spec.image.sources)"}
		}
		if img, found, err = s.Engine.Image(ctx, ref); err != nil || !found {
			return img, fmt.Errorf("image %s: pulled but not found afterwards: %v", ref, err)
		}
	}
	if want := pl.Image.Digest; want != "" && img.Digest != want && !hasRepoDigest(img.RepoDigests, want) {
		return img, &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "image " + ref, Rule: RuleImageDigest,
			Reason: fmt.Sprintf("the profile pins %s but the local image has %s", want, orDash(img.Digest)),
			Fix:    "fetch the pinned image (sourceosctl agent-machine image pull), or update spec.image.digest",
		}}}
	}
	return img, nil
}

// IsLocalRef reports whether ref names an image built on this host (localhost/…), which no
// registry serves.
func IsLocalRef(ref string) bool { return strings.HasPrefix(ref, "localhost/") }

// BuildImageCommand builds the default workspace image.
const BuildImageCommand = "sourceosctl agent-machine image build"

func hasRepoDigest(repoDigests []string, digest string) bool {
	for _, rd := range repoDigests {
		if strings.HasSuffix(rd, "@"+digest) {
			return true
		}
	}
	return false
}

// createSecrets reads each admitted secret's value at the last moment and hands it to Podman.
// It returns the names created so far, for cleanup even on failure.
func (s *Session) createSecrets(ctx context.Context, pl *Plan) ([]string, error) {
	var created []string
	for i, src := range pl.SecretSources {
		value, err := s.secretValue(src)
		if err != nil {
			return created, err
		}
		name := pl.Secrets[i].Name
		if err := s.Engine.CreateSecret(ctx, name, value); err != nil {
			// It may exist although the request failed (a lost response): never leave a
			// secret's value behind.
			_ = s.Engine.RemoveSecret(name)
			return created, err
		}
		created = append(created, name)
	}
	return created, nil
}

func (s *Session) secretValue(src policy.SecretDecision) ([]byte, error) {
	kind, from, _ := strings.Cut(src.Source, ":")
	var value []byte
	if kind == "file" {
		b, err := s.ReadFile(from)
		if err != nil {
			return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("cannot read its source file %s: %v", from, cause.Root(err))}
		}
		value = []byte(strings.TrimRight(string(b), "\r\n"))
	} else {
		value = []byte(s.Getenv(from))
	}
	if len(value) == 0 {
		return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("its source %s is empty or unset", src.Source),
			Fix: "set it first, e.g. export " + from + "=…"}
	}
	return value, nil
}

func (s *Session) removeSecrets(names []string) {
	for _, n := range names {
		if err := s.Engine.RemoveSecret(n); err != nil {
			fmt.Fprintf(s.ErrOut, "! %v\n", err)
		}
	}
}

// attachAndWait streams the container's stdio and returns when it exits or a signal arrives;
// on a signal the container is stopped gracefully (killed after StopTimeout).
func (s *Session) attachAndWait(ctx context.Context, id string, out *Outcome) error {
	attachCtx, cancelAttach := context.WithCancel(ctx)
	defer cancelAttach()
	ready := make(chan bool, 1)
	attached := make(chan error, 1)
	go func() { attached <- s.Engine.Attach(attachCtx, id, s.In, s.Out, s.ErrOut, ready) }()
	select {
	case <-ready:
	case err := <-attached:
		return interrupted(ctx, out, err)
	case <-ctx.Done():
		return interrupted(ctx, out, ctx.Err())
	}
	if err := s.Engine.Start(ctx, id); err != nil {
		return interrupted(ctx, out, err)
	}
	out.Ran = true
	s.event(out, "started")
	select {
	case err := <-attached:
		if err != nil && ctx.Err() == nil {
			return err
		}
	case <-ctx.Done():
	}
	waitCtx := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		out.Interrupted, out.Cause = true, causeOf(ctx)
		if err := s.Engine.Stop(waitCtx, id, s.StopTimeout); err != nil {
			fmt.Fprintf(s.ErrOut, "! %v\n", err)
		}
	}
	code, err := s.Engine.Wait(waitCtx, id)
	if err != nil {
		return err
	}
	out.ExitCode = code
	return nil
}

// interrupted marks the outcome when err happened because ctx was cancelled by a signal.
func interrupted(ctx context.Context, out *Outcome, err error) error {
	if ctx.Err() != nil {
		out.Interrupted, out.Cause = true, causeOf(ctx)
		return context.Cause(ctx)
	}
	return err
}

func causeOf(ctx context.Context) string {
	var in *Interrupt
	if errors.As(context.Cause(ctx), &in) {
		return in.Signal
	}
	return context.Cause(ctx).Error()
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
