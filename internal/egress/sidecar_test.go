package egress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSidecarRunLogsAndAccounts runs the gateway as a sidecar in this process: it says ready,
// refuses and allows through its socket, and once stopped writes every attempt and an account
// line that ReadSidecarLog accepts.
func TestSidecarRunLogsAndAccounts(t *testing.T) {
	dest, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	go func() {
		for {
			c, err := dest.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sock := filepath.Join(t.TempDir(), "gateway.sock")
	var ready, log bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rules := Rules{Allow: []RuleText{{Rule: dest.Addr().String(), Source: "test"}}}
	go func() {
		done <- Sidecar{Socket: sock, UID: -1, Rules: rules, Ready: syncWriter{&ready}, Log: &log}.Run(ctx)
	}()
	ask := func(target string) string {
		var c net.Conn
		var err error
		for i := 0; i < 100; i++ { // until the socket exists
			if c, err = net.Dial("unix", sock); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	if got := ask(dest.Addr().String()); !strings.Contains(got, " 200 ") {
		t.Errorf("allowed CONNECT: %q", got)
	}
	if got := ask("elsewhere.test:443"); !strings.Contains(got, " 403 ") {
		t.Errorf("refused CONNECT: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	if !strings.HasPrefix(ready.String(), "ready "+sock) {
		t.Errorf("ready line %q", ready.String())
	}
	events, err := ReadSidecarLog(strings.NewReader(log.String()))
	if err != nil || len(events) != 2 || events[0].Verdict != Allowed || events[1].Verdict != Denied {
		t.Errorf("log %v %+v:\n%s", err, events, log.String())
	}
}

type syncWriter struct{ b *bytes.Buffer }

func (w syncWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// TestReadSidecarLogRefusesGaps: a log cut short, one whose account does not match its
// records, or one that says a connection was unaccounted is an error — never a silent gap.
func TestReadSidecarLogRefusesGaps(t *testing.T) {
	ev := `{"time":"2026-12-02T00:00:00Z","method":"CONNECT","host":"a.test","port":443,"verdict":"denied","bytesOut":0,"bytesIn":0,"durationNs":0}` + "\n"
	for _, c := range []struct{ name, log, want string }{
		{"complete", ev + `{"attempts":1}` + "\n", ""},
		{"empty but accounted", `{"attempts":0}` + "\n", ""},
		{"cut short", ev, "ends without its account"},
		{"nothing at all", "", "ends without its account"},
		{"count mismatch", ev + ev + `{"attempts":1}` + "\n", "holds 2 attempts but accounts for 1"},
		{"unaccounted", ev + `{"attempts":1,"unaccounted":"GET a.test:443 still open"}` + "\n", "could not account for every connection: GET a.test:443 still open"},
		{"garbage", ev + "not json\n", "the gateway's log"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadSidecarLog(strings.NewReader(c.log))
			if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}
