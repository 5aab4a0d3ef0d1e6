package agentmachine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/guard"
)

// containerRun is one container's life on an engine: create, compare with the spec, attach,
// start, wait, remove. A session goes through it phase by phase, each step with its own
// clean-up; the tool probe goes through it in one call (once).
type containerRun struct {
	engine Engine
	spec   container.Spec
	// image is the image the container is made from: its environment is expected too.
	image container.Image
	// nonce is set when the command runs through the helper (withHelper), whose verdict
	// line carries it.
	nonce string
	id    string
	// inspect is the server's whole `podman inspect` of the container as created.
	inspect []byte
}

// create creates the container. If the request is cancelled, the server may still have
// created it: it is then removed by its name, which is ours and unique.
func (c *containerRun) create(ctx context.Context) error {
	id, err := c.engine.Create(ctx, c.spec)
	if err != nil {
		if ctx.Err() != nil {
			_ = c.engine.Remove(ctx, c.spec.Name)
		}
		return err
	}
	c.id = id
	return nil
}

func (c *containerRun) remove(ctx context.Context) error { return c.engine.Remove(ctx, c.id) }

// compare inspects the created container and returns every way it differs from the spec:
// any difference means the server weakened it, and it must never start.
func (c *containerRun) compare(ctx context.Context) ([]string, error) {
	observed, raw, err := c.engine.Inspect(ctx, c.id)
	if err != nil {
		return nil, err
	}
	c.inspect = raw
	return container.Verify(c.spec, c.image, observed), nil
}

// ran is how a container's run ended.
type ran struct {
	Code        int
	Started     bool
	Interrupted bool  // ctx ended before the container did
	StopErr     error // the graceful stop after an interruption failed
	// Checked is true when the helper checked the container from inside and found it as
	// planned; Refused lists what it found wrong (the tool never started).
	Checked bool
	Refused []string
}

// run attaches the streams, starts the container once the stream is connected (so no
// output is lost) and waits for it to exit; started is called right after the start. When
// ctx ends first, the container is stopped gracefully (killed after stopTimeout) and its real
// exit code is still returned: stop and wait do not inherit ctx's cancellation.
func (c *containerRun) run(ctx context.Context, in io.Reader, out, errOut io.Writer, stopTimeout time.Duration, started func()) (res ran, err error) {
	if c.nonce != "" {
		// The helper's verdict is the first line of its standard error, which a terminal
		// merges into out.
		var watch *verdictWatch
		watch, out, errOut = watchVerdict(c.nonce, c.spec.TTY, out, errOut)
		defer func() {
			watch.flush()
			verdict, diffs := watch.result()
			switch {
			case verdict && diffs == nil:
				res.Checked = true
			case verdict && res.Code == guard.ExitRefused:
				res.Refused = diffs
			}
		}()
	}
	attachCtx, cancelAttach := context.WithCancel(ctx)
	defer cancelAttach()
	ready := make(chan bool, 1)
	attached := make(chan error, 1)
	go func() { attached <- c.engine.Attach(attachCtx, c.id, in, out, errOut, ready) }()
	if err := awaitAttach(ctx, ready, attached); err != nil {
		return res, err
	}
	if err := c.engine.Start(ctx, c.id); err != nil {
		return res, err
	}
	res.Started = true
	if started != nil {
		started()
	}
	select {
	case err := <-attached:
		if err != nil && ctx.Err() == nil {
			return res, err
		}
	case <-ctx.Done():
	}
	after := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		res.Interrupted = true
		res.StopErr = c.engine.Stop(after, c.id, stopTimeout)
	}
	code, err := c.engine.Wait(after, c.id)
	if err != nil {
		return res, err
	}
	res.Code = code
	return res, nil
}

// startChecked starts the container, whose command runs through the helper, and returns once
// the helper has given its verdict (the container then keeps running), or once the container
// has exited, or after timeout. Nothing stays attached.
func (c *containerRun) startChecked(ctx context.Context, timeout time.Duration) (res ran, err error) {
	var out bytes.Buffer
	watch := &verdictWatch{nonce: c.nonce, w: &out, decidedCh: make(chan struct{})}
	attachCtx, cancelAttach := context.WithCancel(ctx)
	defer cancelAttach()
	ready := make(chan bool, 1)
	attached := make(chan error, 1)
	// A pointer: the bindings check the writers with reflect and panic on io.Discard's struct.
	go func() { attached <- c.engine.Attach(attachCtx, c.id, nil, &discard{}, watch, ready) }()
	if err := awaitAttach(ctx, ready, attached); err != nil {
		return res, err
	}
	if err := c.engine.Start(ctx, c.id); err != nil {
		return res, err
	}
	res.Started = true
	select {
	case <-watch.decidedCh:
	case <-attached:
	case <-time.After(timeout):
		return res, fmt.Errorf("the helper gave no verdict within %s", timeout)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	watch.flush()
	verdict, diffs := watch.result()
	switch {
	case verdict && diffs == nil:
		res.Checked = true
		return res, nil
	case verdict:
		res.Refused = diffs
		res.Code, _ = c.engine.Wait(context.WithoutCancel(ctx), c.id)
		return res, nil
	}
	return res, fmt.Errorf("the helper gave no verdict: %s", strings.TrimSpace(lastLines(out.String(), 5)))
}

// awaitAttach returns once the attach is connected (ready), or why it never will be. An
// attach that connected and already ended is connected: its result is put back for the
// caller, which starts the container either way (select picks at random among ready cases,
// and the end must not be taken for a failure to connect).
func awaitAttach(ctx context.Context, ready <-chan bool, attached chan error) error {
	select {
	case <-ready:
		return nil
	case err := <-attached:
		select {
		case <-ready:
			attached <- err
			return nil
		default:
		}
		if err == nil {
			err = errors.New("the attach to the container ended before it connected")
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// discard drops what it is given.
type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }

// once runs the container from creation to removal and returns how it ended; a container
// the server weakened never starts (diffs is then non-empty).
func (c *containerRun) once(ctx context.Context, in io.Reader, out, errOut io.Writer, stopTimeout time.Duration) (res ran, diffs []string, err error) {
	if err := c.create(ctx); err != nil {
		return res, nil, err
	}
	defer func() { _ = c.remove(ctx) }()
	if diffs, err = c.compare(ctx); err != nil || len(diffs) > 0 {
		return res, diffs, err
	}
	res, err = c.run(ctx, in, out, errOut, stopTimeout, nil)
	return res, nil, err
}
