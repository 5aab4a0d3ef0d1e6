package podman_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/podman"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// hangGuard bounds a call that must return once its context ends: reaching it means the
// context was ignored (the bindings' own timeouts are 30 s and more).
const hangGuard = 20 * time.Second

// TestEveryCallHonoursItsContext gives each client method a context that a stalling service
// outlives: each returns the context's error, and the service sees its request cancelled.
func TestEveryCallHonoursItsContext(t *testing.T) {
	s := podmantest.StallingService(t)
	c, err := podman.Connect(context.Background(), podman.Endpoint{URI: s.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	spec := container.Spec{Name: "x", Image: "i", Command: []string{"true"}, Network: "none"}
	calls := map[string]func(ctx context.Context) error{
		"Info":         func(ctx context.Context) error { _, err := c.Info(ctx); return err },
		"Image":        func(ctx context.Context) error { _, _, err := c.Image(ctx, "localhost/x:1"); return err },
		"Pull":         func(ctx context.Context) error { return c.Pull(ctx, "registry.example.com/x:1", &bytes.Buffer{}) },
		"Create":       func(ctx context.Context) error { _, err := c.Create(ctx, spec); return err },
		"Inspect":      func(ctx context.Context) error { _, _, err := c.Inspect(ctx, "x"); return err },
		"Start":        func(ctx context.Context) error { return c.Start(ctx, "x") },
		"Wait":         func(ctx context.Context) error { _, err := c.Wait(ctx, "x"); return err },
		"Containers":   func(ctx context.Context) error { _, err := c.Containers(ctx, "a=b", true); return err },
		"CreateSecret": func(ctx context.Context) error { return c.CreateSecret(ctx, "s", []byte("v")) },
		"Tag":          func(ctx context.Context) error { return c.Tag(ctx, "x", "localhost/y:1") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- call(ctx) }()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "context deadline exceeded") {
					t.Errorf("error %v, want the context's deadline", err)
				}
			case <-time.After(hangGuard):
				t.Fatal("the call ignored its context")
			}
			<-s.Arrived
			select {
			case <-s.Cancelled:
			case <-time.After(hangGuard):
				t.Fatal("the service never saw the request cancelled")
			}
		})
	}
}

// TestACancelledPullReturns: a pull (which has no time limit of its own) ends when its
// caller cancels it — Ctrl-C during a long pull.
func TestACancelledPullReturns(t *testing.T) {
	s := podmantest.StallingService(t)
	c, err := podman.Connect(context.Background(), podman.Endpoint{URI: s.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Pull(ctx, "registry.example.com/big:1", &bytes.Buffer{}) }()
	if path := <-s.Arrived; !strings.HasSuffix(path, "/images/pull") {
		t.Fatalf("the service got %s, want the pull", path)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("error %v, want the cancellation", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the cancelled pull did not return")
	}
	if path := <-s.Cancelled; !strings.HasSuffix(path, "/images/pull") {
		t.Errorf("cancelled %s, want the pull request", path)
	}
}

// TestRemovalOutlivesTheCallersCancellation: clean-up must still happen after Ctrl-C
// cancelled the session: Remove and RemoveSecret reach the service with a cancelled context
// and are not cancelled with it.
func TestRemovalOutlivesTheCallersCancellation(t *testing.T) {
	s := podmantest.StallingService(t)
	c, err := podman.Connect(context.Background(), podman.Endpoint{URI: s.URI, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, call := range map[string]func() error{
		"Remove":       func() error { return c.Remove(ctx, "x") },
		"RemoveSecret": func() error { return c.RemoveSecret(ctx, "s") },
	} {
		t.Run(name, func(t *testing.T) {
			go func() { _ = call() }()
			select {
			case <-s.Arrived:
			case <-time.After(hangGuard):
				t.Fatal("the removal never reached the service")
			}
			select {
			case path := <-s.Cancelled:
				t.Fatalf("%s was cancelled with the caller's context", path)
			case <-time.After(300 * time.Millisecond): // still waiting on the service, as it should
			}
		})
	}
}
