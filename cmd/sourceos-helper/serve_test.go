//go:build linux

package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while serve writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func busybox(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("busybox")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox is not installed (scripts/install-deps.sh installs busybox-static)")
		}
		t.Skip("busybox is not installed")
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeRunsUntilStdinEnds: serve says when the server listens, the server answers, and
// closing standard input stops the server's whole process group.
func TestServeRunsUntilStdinEnds(t *testing.T) {
	bb := busybox(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from the workspace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	stdin, closeStdin := io.Pipe()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	// A shell whose child is the server: stopping must reach the grandchild too.
	go func() {
		code <- serve([]string{addr, "--", bb, "sh", "-c", bb + " httpd -f -p " + addr + " -h " + dir + " & wait"}, stdin, &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), serveReadyLine+addr+" pgid ") {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line; stdout %q, stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "from the workspace\n" {
		t.Fatalf("body %q", body)
	}
	closeStdin.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d, stderr %q", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not end when its standard input did")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the server still listens after serve ended: its process group was not stopped")
	}
}

// TestServeRefuses: a port already taken (another server would answer), a command that ends
// before it listens (its exit code), and an address off the loopback.
func TestServeRefuses(t *testing.T) {
	bb := busybox(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	go func() {
		for {
			c, err := taken.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name, addr string
		argv       []string
		code       int
		says       string
	}{
		{"port taken", taken.Addr().String(), []string{bb, "sleep", "60"}, 1, "already listens"},
		{"exits first", freeAddr(t), []string{bb, "sh", "-c", "exit 7"}, 7, "exited before it listened"},
		{"not loopback", "0.0.0.0:8080", []string{bb, "true"}, 2, "only a port on the container's loopback"},
		{"no such command", freeAddr(t), []string{"/nonexistent/ide"}, 127, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			open, hold := io.Pipe() // standard input that does not end
			defer hold.Close()
			got := serve(append([]string{tc.addr, "--"}, tc.argv...), open, &stdout, &stderr)
			if got != tc.code || !strings.Contains(stderr.String(), tc.says) || stdout.String() != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", got, tc.code, stdout.String(), stderr.String(), tc.says)
			}
		})
	}
}
