package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// DevServing is how to serve a project's dev server from a workspace (serve).
type DevServing struct {
	// Listener accepts connections; it must be on this host's loopback.
	Listener net.Listener
	// Port is where the server listens inside the container (on its loopback: the container
	// has no other interface the host could reach).
	Port int
	// Command starts the server (a shell command line run in Dir, relative to the workspace).
	Command string
	Dir     string
	// Project is what the serving join records.
	Project *evidence.Project
	// Ready is called once the server listens; Log receives its output, kept at LogPath.
	Ready   func()
	Log     io.Writer
	LogPath string
}

// devServerStart bounds waiting for a dev server to listen, as the helper does.
const devServerStart = ideStart

// maxDevRelays bounds the connections relayed at once: each is a join.
const maxDevRelays = 16

// ServeDev starts the dev server in the running workspace w and relays each TCP connection
// accepted on o.Listener to it, byte for byte, until ctx ends (Ctrl-C) or the server does;
// then the server's process group is stopped and the workspace stays up. The relays are the
// IDE's (served.go): checked joins, ending the serving when the workspace or the port is not
// what was served. Nothing about the container's network changes: a relay is a way in to
// one port, not a way out.
func (s *Session) ServeDev(ctx context.Context, p *profile.Profile, w *Workspace, o DevServing) error {
	if !w.Running() {
		return &WorkspaceDownError{Name: w.Name, Why: "it is down"}
	}
	if addr, ok := o.Listener.Addr().(*net.TCPAddr); !ok || !addr.IP.IsLoopback() {
		return fmt.Errorf("a dev server is served on this host's loopback only, not on %s", o.Listener.Addr())
	}
	if o.Port <= 0 || o.Port > 65535 {
		return fmt.Errorf("port %d: a port is 1-65535", o.Port)
	}
	script := o.Command
	if o.Dir != "" && o.Dir != "." {
		script = "cd -- " + ShellQuote([]string{o.Dir}) + " && " + script
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	sv, err := s.startServed(ctx, p, w, servedProgram{What: "the dev server", Listen: listen, Command: []string{"/bin/sh", "-c", script},
		Log: o.Log, LogPath: o.LogPath, Start: devServerStart, Project: o.Project,
		Fix: "sourceosctl agent-machine up --fresh --name " + w.Name + " (its work is kept on its branch), then serve again"})
	if err != nil {
		return err
	}
	if o.Ready != nil {
		o.Ready()
	}
	serving := make(chan error, 1)
	var conns sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	stopped := false
	done := make(chan struct{})
	slots := make(chan struct{}, maxDevRelays)
	go func() {
		for {
			c, err := o.Listener.Accept()
			if err != nil {
				serving <- err
				return
			}
			select {
			case slots <- struct{}{}:
			case <-done:
				_ = c.Close()
				continue // the listener is closed: Accept fails next
			}
			// Under the lock, so that no relay starts once closing has begun (and Wait
			// never races an Add).
			mu.Lock()
			if stopped {
				mu.Unlock()
				<-slots
				_ = c.Close()
				continue
			}
			open[c] = true
			conns.Add(1)
			mu.Unlock()
			go func() {
				defer conns.Done()
				defer func() { <-slots }()
				relayTCP(c, sv.relay())
				mu.Lock()
				delete(open, c)
				mu.Unlock()
			}()
		}
	}()
	end := sv.wait(ctx, serving, func() {
		close(done)
		_ = o.Listener.Close()
		mu.Lock()
		stopped = true
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
	})
	conns.Wait()
	var ne *net.OpError
	if errors.As(end, &ne) && errors.Is(ne.Err, net.ErrClosed) {
		return nil
	}
	return end
}

// relayTCP copies between a host connection and a relay until both directions end: the
// client's end of writing closes the relay's input (the helper's connect half-closes the
// server's side), and the server's end of writing closes the client's connection.
func relayTCP(c net.Conn, r *relayConn) {
	go func() {
		_, _ = io.Copy(r.toJoin, c)
		_ = r.toJoin.Close()
	}()
	_, _ = io.Copy(c, r.fromJoin)
	_ = c.Close()
	_ = r.Close()
}
