// Package forward relays TCP connections accepted inside a network-less container to a Unix
// socket mounted into it — the container's only way to the session's egress gateway. It is
// linked into the in-container helper, so it imports nothing beyond the standard library's
// net and io.
package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
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

// Serve accepts on l until it is closed, relaying each connection to socket in both
// directions with half-closes, so a client that finishes sending still reads the answer.
func Serve(l net.Listener, socket string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go relay(c, socket)
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
