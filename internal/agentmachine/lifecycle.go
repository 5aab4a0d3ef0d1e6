package agentmachine

import (
	"context"
	"errors"
	"fmt"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/policy"
)

// A phase is one step of a session's life (DESIGN.md, "A session's life"). run does the step
// and returns its clean-up (nil when there is nothing to undo); clean-ups run in reverse
// order however the session ends. Adding a step to every session is one phase in lifecycle.
type phase struct {
	name string
	run  func(r *sessionRun, ctx context.Context) (undo func(), err error)
	// required: if it fails the session never began — nothing after it runs and nothing is
	// recorded. Only preparing the record itself is required: a session that could not be
	// recorded must never start.
	required bool
	// always: it runs even after an earlier phase failed (collecting what happened).
	always bool
}

// lifecycle is a session's life, in order. Recording comes next and then the clean-ups, in
// reverse order; the two overlap in time (see Session.Run), and the record says so.
func lifecycle(ws *workspaceRun) []phase {
	switch {
	case ws == nil:
	case ws.action == actionUp: // a session whose tool idles once checked: commands join it
		return []phase{
			{name: "prepare", run: (*sessionRun).prepare, required: true},
			{name: "image", run: (*sessionRun).image},
			{name: "secrets", run: (*sessionRun).secrets},
			{name: "gateway", run: (*sessionRun).gateway},
			{name: "create", run: (*sessionRun).create},
			{name: "compare", run: (*sessionRun).compare},
			{name: "start", run: (*sessionRun).startIdle},
			{name: "collect", run: (*sessionRun).collectWorkspace, always: true},
		}
	case ws.action == actionJoin:
		return []phase{
			{name: "prepare", run: (*sessionRun).prepare, required: true},
			{name: "inspect", run: (*sessionRun).joinCheck},
			{name: "exec", run: (*sessionRun).execJoin},
			{name: "drift", run: (*sessionRun).joinDrift, always: true},
			{name: "collect", run: (*sessionRun).collectWorkspace, always: true},
		}
	case ws.action == actionDown:
		return []phase{
			{name: "prepare", run: (*sessionRun).prepare, required: true},
			{name: "stop", run: (*sessionRun).stopWorkspace},
			{name: "collect", run: (*sessionRun).collectWorkspace, always: true},
		}
	}
	return []phase{
		{name: "prepare", run: (*sessionRun).prepare, required: true},
		{name: "image", run: (*sessionRun).image},
		{name: "secrets", run: (*sessionRun).secrets},
		{name: "gateway", run: (*sessionRun).gateway},
		{name: "ship", run: (*sessionRun).shipRepo},
		{name: "create", run: (*sessionRun).create},
		{name: "compare", run: (*sessionRun).compare},
		{name: "run", run: (*sessionRun).run},
		{name: "drift", run: (*sessionRun).drift, always: true},
		{name: "collect", run: (*sessionRun).collect, always: true},
	}
}

// sessionRun is one session's state as it goes through its phases.
type sessionRun struct {
	*Session
	engine Engine
	plan   *Plan
	facts  Facts
	out    *Outcome
	// ws is set when the run is a workspace's up, join or down.
	ws *workspaceRun

	// prepared: the session exists (its record can be signed); set by prepare.
	prepared bool
	// err is the first failure; later phases that are not always-phases are skipped.
	err error
	// undo are the clean-ups of the phases that ran, in the order they ran.
	undo []func()

	// fail stops the session with a cause (the gateway failed); stopping is closed when the
	// session stops its gateway itself.
	fail     context.CancelCauseFunc
	stopping chan struct{}
	gw       *sessionGateway
	denials  *denialLines

	key         *evidence.Key
	madeSecrets []string // the ephemeral secrets created, by name
	// checkOnly is a dry run's: secret sources are checked, never read from a command.
	checkOnly bool
	// injected are the secrets the gateway injects: placeholders and values, in memory only.
	injected    []egress.SecretValue
	gitIdentity map[string]string // --auth git: the host's git identity variables
	hostTools   chan hostTools
	// gitBeforeDone and gitAfterDone are closed once gitBefore and gitAfter are read: both are
	// read beside the session's critical path, and joined before the record.
	gitBeforeDone, gitAfterDone chan struct{}
	spec                        container.Spec // the plan's spec with pass-through values filled in
	box                         *containerRun  // the session's container, once created
	weakened                    bool           // the server did not apply the plan
	// copyErr is why the session's copy could not be made; copyCollectErr why its work could
	// not be brought back (the copy is kept); patch is the branch's diff.
	copyErr, copyCollectErr error
	patch                   []byte
	// scanRead says how the copy read the repository (in full, or from its watcher);
	// startWatcher: none answered, so the session starts one as it ends.
	scanRead     string
	startWatcher bool
	// A volume workspace (a remote service): what was shipped; the patch file and the binary
	// files left out of it; why the changes could not be brought back (the volume is kept).
	volumeBefore tree
	volumePatch  string
	volumeBinary []string
	volumeErr    error
	volumeKept   bool
	// linksDone is closed once the hard-link check of the mounts is done (see checkLinks).
	linksDone    chan struct{}
	linkRefusals []policy.Refusal
	linkErr      error
	// linksChecked: checkLinks decided, linksResult its verdict.
	linksChecked bool
	linksResult  error

	gitBefore, gitAfter fingerprint.GitState
	diff                []byte
	tool                ToolFacts
	toolAbsent          string
	host                hostTools
}

// live runs the phases and returns the first failure; their clean-ups wait in r.undo.
func (r *sessionRun) live(ctx context.Context) error {
	// Cancelled with a cause when the gateway fails; the clean-ups still use it, so it ends
	// with them (cleanUp).
	ctx, r.fail = context.WithCancelCause(ctx)
	r.stopping = make(chan struct{})
	for _, p := range lifecycle(r.ws) {
		if r.err != nil && !p.always {
			continue
		}
		u, err := p.run(r, ctx)
		if u != nil {
			r.undo = append(r.undo, u)
		}
		if err == nil {
			continue
		}
		if p.required {
			return err
		}
		if r.err == nil {
			r.err = r.interrupted(ctx, err)
		}
	}
	return r.err
}

// cleanUp runs the clean-ups in reverse order, each once.
func (r *sessionRun) cleanUp() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo = nil
	if r.fail != nil {
		r.fail(nil)
	}
}

func (r *sessionRun) event(format string, args ...any) {
	r.out.Events = append(r.out.Events, Event{Time: r.Now().UTC(), What: fmt.Sprintf(format, args...)})
}

// interrupted marks the outcome when err happened because ctx was cancelled by a signal,
// and returns the signal instead; a failed gateway is the session's failure, not a signal.
func (r *sessionRun) interrupted(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	var ge *GatewayError
	if errors.As(context.Cause(ctx), &ge) {
		return ge
	}
	r.out.Interrupted, r.out.Cause = true, causeOf(ctx)
	return context.Cause(ctx)
}

func causeOf(ctx context.Context) string {
	var in *Interrupt
	if errors.As(context.Cause(ctx), &in) {
		return in.Signal
	}
	return context.Cause(ctx).Error()
}
