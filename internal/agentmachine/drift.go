package agentmachine

import (
	"context"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
)

// Drift verdicts, recorded in the evidence's checks.
const (
	DriftNone       = "none"
	DriftDiffers    = "differs"
	DriftNotChecked = "not-checked"
)

// driftTimeout bounds the inspection at the end: the session is over, its record waits.
const driftTimeout = 30 * time.Second

// drift inspects the session's container again once the tool has finished and compares it
// with the plan as the check before its start did, with the exec sessions run in it: a
// change made while the tool ran (`podman update`, a privileged `podman exec`) is recorded,
// never passed over. Nothing is checked when the tool never started.
func (r *sessionRun) drift(ctx context.Context) (func(), error) {
	if r.box == nil || !r.out.Ran {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), driftTimeout)
	defer cancel()
	diffs, err := r.box.compare(ctx)
	if err == nil {
		var execs []container.ExecSession
		if execs, err = r.engine.ExecSessions(ctx, r.box.id, nil); err == nil {
			diffs = append(diffs, container.VerifyExecs(r.spec, execs)...)
		}
	}
	r.recordDrift(diffs, err)
	return nil, nil
}

// joinDrift inspects the workspace again when the join's command has finished, the way the
// join's own check did before it ran.
func (r *sessionRun) joinDrift(ctx context.Context) (func(), error) {
	if !r.out.Ran {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), driftTimeout)
	defer cancel()
	w := r.ws.ws
	_, diffs, err := inspectWorkspace(ctx, r.engine, w, r.Dirs.knownExecs(w.Name))
	r.recordDrift(diffs, err)
	return nil, nil
}

// recordDrift puts the end's comparison in the record and the session's log. An inspection
// that failed is not a difference: it is recorded as not checked, with why.
func (r *sessionRun) recordDrift(diffs []string, err error) {
	c := &r.out.Checks
	switch {
	case err != nil:
		c.Drift, c.DriftDifferences = DriftNotChecked, []string{err.Error()}
		r.event("drift: not checked: %v", err)
	case len(diffs) > 0:
		c.Drift, c.DriftDifferences = DriftDiffers, diffs
		r.event("drift: the container changed while the tool ran: %s", strings.Join(diffs, "; "))
	default:
		c.Drift = DriftNone
		r.event("drift: none (inspected again at the end, as planned)")
	}
}
