package forward

import (
	"bufio"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"127.0.0.1:3128=/run/sourceos/egress.sock", ""},
		{"[::1]:3128=/run/sourceos/egress.sock", ""},
		{"0.0.0.0:3128=/run/x.sock", "loopback only"},
		{"10.0.0.1:3128=/run/x.sock", "loopback only"},
		{"127.0.0.1=/run/x.sock", "not an address with a port"},
		{"127.0.0.1:0=/run/x.sock", "not an address with a port"},
		{"127.0.0.1:3128", "want 127.0.0.1:PORT"},
		{"127.0.0.1:3128=relative.sock", "want 127.0.0.1:PORT"},
	} {
		_, err := Parse(tc.in)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Parse(%q) = %v; want %q", tc.in, err, tc.err)
		}
	}
}

// A connection to the TCP side reaches the socket's server both ways, half-close included;
// with no server, the client gets a 502 that says why.
func TestServeRelays(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "up.sock")
	up, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c) // until the client's half-close
				_, _ = c.Write([]byte("echo:" + string(b)))
			}()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { _ = Serve(l, sock) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("hello"))
	_ = c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "echo:hello" {
		t.Errorf("relayed %q", got)
	}

	up.Close()
	c, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "HTTP/1.1 502") {
		t.Errorf("with the gateway gone: %q", line)
	}
}

// flakyListener fails its first accepts as a process out of descriptors does.
type flakyListener struct {
	net.Listener
	fails int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, errors.New("accept4: too many open files")
	}
	return f.Listener.Accept()
}

// TestServeOutlivesFailedAccepts: failed accepts are retried, so the forwarder keeps relaying
// after running out of descriptors. Found by a probe: the first such error stopped it for the
// rest of the session.
func TestServeOutlivesFailedAccepts(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "up.sock")
	up, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("up"))
			c.Close()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(&flakyListener{Listener: l, fails: 5}, sock) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "up" {
		t.Errorf("relayed %q after failed accepts", got)
	}
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after its listener closed: %v", err)
	}
}
