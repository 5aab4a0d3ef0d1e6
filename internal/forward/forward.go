// Package forward relays TCP connections accepted inside a network-less container to a Unix
// socket mounted into it — the container's only way to the session's egress gateway. It is
// linked into the in-container helper, so it imports nothing beyond the standard library's
// net, io and time.
package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Spec is one forward: a TCP address to listen on inside the container (always loopback) and
// the Unix socket each connection is relayed to.
type Spec struct {
	Listen string // 127.0.0.1:PORT
	Socket string // /run/sourceos/egress.sock
}

// String is the spec as the helper's --forward flag takes it.
func (s Spec) String() string { return s.Listen + "=" + s.Socket }

// Parse reads LISTEN=SOCKET; LISTEN must be a loopback address with a port.
func Parse(v string) (Spec, error) {
	listen, socket, ok := strings.Cut(v, "=")
	if !ok || socket == "" || !strings.HasPrefix(socket, "/") {
		return Spec{}, fmt.Errorf("--forward %q: want 127.0.0.1:PORT=/path/to/socket", v)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return Spec{}, fmt.Errorf("--forward %q: %q is not an address with a port", v, listen)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return Spec{}, fmt.Errorf("--forward %q: listens on loopback only, not %s", v, host)
	}
	return Spec{Listen: listen, Socket: socket}, nil
}

// maxRelays bounds the connections relayed at once; more wait in the listen backlog.
const maxRelays = 1024

// Serve accepts on l until it is closed, relaying each connection to socket in both
// directions with half-closes, so a client that finishes sending still reads the answer. At
// most maxRelays are relayed at once, and a failed accept (out of descriptors) is retried
// after a pause that grows to a second: a flood of connections delays the tool's traffic,
// it does not end it.
func Serve(l net.Listener, socket string) error {
	slots := make(chan struct{}, maxRelays)
	pause := time.Duration(0)
	for {
		slots <- struct{}{}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		go func() {
			defer func() { <-slots }()
			relay(c, socket)
		}()
	}
}

func relay(client net.Conn, socket string) {
	defer client.Close()
	up, err := net.Dial("unix", socket)
	if err != nil {
		// The gateway is gone: answer as a proxy would, so the tool says why.
		msg := "the session's egress gateway is not reachable (" + err.Error() + ")\n"
		_, _ = fmt.Fprintf(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if hc, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		}
	}
	go pipe(up, client)
	go pipe(client, up)
	wg.Wait()
}
