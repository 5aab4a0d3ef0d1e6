package podmantest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// Stalling is a fake Podman service on a unix socket: it answers the ping that opens a
// connection (as a 4.3.1 server) and then never answers anything else. Every request it
// stalls is reported on Cancelled when the client gives up on it, which proves that a
// caller's deadline or cancellation reached the HTTP request rather than being dropped.
type Stalling struct {
	URI string
	// Arrived receives the path of each request the service stalls, as it arrives.
	Arrived chan string
	// Cancelled receives the path of each stalled request once its client cancelled it.
	Cancelled chan string
}

// StallingService starts a Stalling service for the test.
func StallingService(t testing.TB) *Stalling {
	t.Helper()
	dir, err := os.MkdirTemp("", "sosctl-stall-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "podman.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stalling{URI: "unix://" + sock, Arrived: make(chan string, 64), Cancelled: make(chan string, 64)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if filepath.Base(r.URL.Path) == "_ping" {
			w.Header().Set("Libpod-API-Version", "4.3.1")
			w.Header().Set("API-Version", "1.41")
			_, _ = w.Write([]byte("OK"))
			return
		}
		// The server notices a client that went away only once the body has been read.
		_, _ = io.Copy(io.Discard, r.Body)
		s.Arrived <- r.URL.Path
		<-r.Context().Done()
		s.Cancelled <- r.URL.Path
	})}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("stalling service: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}
