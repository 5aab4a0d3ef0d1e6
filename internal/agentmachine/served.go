package agentmachine

// A program served from a running workspace — the browser IDE, a project's dev server — is
// started inside its container through the helper's serve (its own process group, stopped when
// sourceosctl lets go of it; a ready line once its port listens) and reached by relays: each
// connection is a join running the helper's connect to the port, which refuses unless the
// port is held by the served group. Every relay is checked and recorded like exec; a relay
// the workspace refuses (changed behind our back) or one that finds another process on the
// port ends the serving (fail closed).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// served is a program serving in a workspace, until stop.
type served struct {
	s       *Session
	p       *profile.Profile
	w       *Workspace
	what    string // "code-server", "the dev server"
	listen  string // its address inside the container
	logPath string
	fix     string // how to start over when the workspace changed
	log     io.Writer

	stdin      *io.PipeWriter
	started    chan error // the serve join's end
	helperSays *serveWhy
	watch      *readyWatch

	relays      Session
	relayCtx    context.Context
	stopRelays  context.CancelFunc
	refused     chan error
	helperInCtr string
}

// servedProgram says what to serve from a workspace.
type servedProgram struct {
	What    string
	Listen  string
	Command []string
	Log     io.Writer
	LogPath string
	Fix     string
	// Start bounds waiting for it to listen.
	Start time.Duration
	// Project is what the serving join records (serve); nil for the IDE.
	Project *evidence.Project
}

// startServed starts prog in the running workspace w and returns once it listens, or with
// why it did not. The caller serves its relays and calls stop.
func (s *Session) startServed(ctx context.Context, p *profile.Profile, w *Workspace, prog servedProgram) (*served, error) {
	if w.Plan.Helper == nil {
		return nil, &MissingError{Component: prog.What, Detail: "it is started and reached through sourceos-helper, which this workspace has none of"}
	}
	log := prog.Log
	if log == nil {
		log = io.Discard
	}
	sv := &served{s: s, p: p, w: w, what: prog.What, listen: prog.Listen, logPath: prog.LogPath, fix: prog.Fix, log: log,
		started: make(chan error, 1), helperSays: &serveWhy{log: log}, refused: make(chan error, 1),
		helperInCtr: helperInside(*w.Plan.Helper)}
	sv.watch = &readyWatch{ready: make(chan struct{}), log: log}
	stdin, stopIn := io.Pipe()
	sv.stdin = stopIn
	argv := append([]string{sv.helperInCtr, serveCommand, prog.Listen, "--"}, prog.Command...)
	go func() {
		_, err := s.JoinWith(context.WithoutCancel(ctx), p, w, SessionRequest{Tool: tool.Shell},
			Joining{In: stdin, Out: sv.watch, ErrOut: sv.helperSays, Argv: argv, Project: prog.Project})
		sv.started <- err
	}()
	select {
	case <-sv.watch.ready:
	case err := <-sv.started:
		return nil, sv.ended(err, "before it listened")
	case <-time.After(prog.Start):
		_ = sv.stop()
		return nil, fmt.Errorf("%s did not listen on %s within %s; see %s", prog.What, prog.Listen, prog.Start, prog.LogPath)
	case <-ctx.Done():
		_ = sv.stop()
		return nil, ctx.Err()
	}
	// Quiet: a relay's bundle is one of many; refusals are said once, by the serving's end.
	sv.relays = *s
	sv.relays.Quiet = true
	sv.relays.IO.ErrOut = io.Discard
	sv.relayCtx, sv.stopRelays = context.WithCancel(context.WithoutCancel(ctx))
	return sv, nil
}

// relay returns a connection to the served program: a join running the helper's connect.
func (sv *served) relay() *relayConn {
	conn, in, out := newRelayConn()
	go func() {
		defer out.Close()         // the reader sees the end of the server's bytes
		defer conn.toJoin.Close() // and can write no more (a relay refused before it ran)
		_, err := sv.relays.JoinWith(sv.relayCtx, sv.p, sv.w, SessionRequest{Tool: tool.Shell},
			Joining{In: in, Out: out, ErrOut: sv.log, Argv: []string{sv.helperInCtr, connectCommand, sv.listen, "--served-by", strconv.Itoa(sv.watch.group())}})
		sv.relayEnded(err)
	}()
	return conn
}

// relayEnded ends the serving when a relay says the workspace or the port is not what was
// served: a refusal, a port held by another process, or no verdict from the helper.
func (sv *served) relayEnded(err error) {
	var re *policy.RefusedError
	var te *ToolExitError
	var nv *NoVerdictError
	var end error
	switch {
	case errors.As(err, &re):
		end = err
	case errors.As(err, &nv) && nv.Code != exitImpostor:
		end = err // the check from inside is not confirmed: fail closed
	case errors.As(err, &te) && te.Code == exitImpostor, errors.As(err, &nv):
		end = &policy.RefusedError{Refusals: []policy.Refusal{{Subject: "workspace " + sv.w.Name, Rule: RuleServerWeakened,
			Reason: "something other than " + sv.what + " took its port " + sv.listen + " while it was served (" + sv.logPath + " says what)",
			Fix:    sv.fix}}}
	case err != nil && !errors.As(err, &te) && sv.relayCtx.Err() == nil:
		fmt.Fprintf(sv.s.IO.ErrOut, "! connection to %s: %v\n", sv.what, err)
	}
	if end != nil {
		select {
		case sv.refused <- end:
		default:
		}
	}
}

// wait serves until ctx ends (nil), a relay ends the serving, the program ends, or serving
// fails; then it calls closing (to stop accepting and let connections go), stops the relays
// and the program.
func (sv *served) wait(ctx context.Context, serving <-chan error, closing func()) error {
	var end error
	select {
	case <-ctx.Done():
	case end = <-sv.refused:
	case err := <-sv.started:
		closing()
		sv.stopRelays()
		return sv.ended(err, "while served")
	case err := <-serving:
		end = fmt.Errorf("serving %s: %w", sv.what, err)
	}
	closing()
	sv.stopRelays()
	if err := sv.stop(); err != nil && end == nil {
		var te *ToolExitError
		if !errors.As(err, &te) {
			end = err
		}
	}
	return end
}

// stop ends the program's standard input, which stops its process group, and waits.
func (sv *served) stop() error {
	_ = sv.stdin.Close()
	select {
	case err := <-sv.started:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not stop within 30 s of being asked; down stops it", sv.what)
	}
}

// ended explains the program's exit: the helper's reason when it gave one.
func (sv *served) ended(err error, when string) error {
	var te *ToolExitError
	if err == nil || errors.As(err, &te) {
		if why := sv.helperSays.why(); why != "" {
			return fmt.Errorf("%s ended %s: %s (its output is in %s)", sv.what, when, why, sv.logPath)
		}
		return fmt.Errorf("%s ended %s; its output is in %s", sv.what, when, sv.logPath)
	}
	return err
}
