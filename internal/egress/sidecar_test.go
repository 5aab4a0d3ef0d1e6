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
	events, sum, err := ReadSidecarLog(strings.NewReader(log.String()))
	if err != nil || len(events) != 2 || events[0].Verdict != Allowed || events[1].Verdict != Denied || sum.Attempts != 2 || len(sum.Destinations) != 2 {
		t.Errorf("log %v %+v:\n%s", err, events, log.String())
	}
}

type syncWriter struct{ b *bytes.Buffer }

func (w syncWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// TestReadSidecarLogRefusesGaps: a log cut short, one whose account does not match its
// records, or one that says a connection was unaccounted is an error — never a silent gap.
func TestReadSidecarLogRefusesGaps(t *testing.T) {
	ev := `{"time":"2026-12-02T00:00:00Z","method":"CONNECT","host":"a.test","port":443,"verdict":"denied","bytesOut":0,"bytesIn":0,"durationNs":0}` + "\n"
	one := `"summary":{"attempts":1,"denied":1,"itemized":1,"destinations":[{"host":"a.test","port":443,"denied":1}]}`
	for _, c := range []struct{ name, log, want string }{
		{"complete", ev + `{"attempts":1,` + one + `}` + "\n", ""},
		{"empty but accounted", `{"attempts":0,"summary":{}}` + "\n", ""},
		{"more counted than itemized", ev + `{"attempts":1,"summary":{"attempts":5000,"denied":5000,"itemized":1}}` + "\n", ""},
		{"cut short", ev, "ends without its account"},
		{"nothing at all", "", "ends without its account"},
		{"count mismatch", ev + ev + `{"attempts":1,` + one + `}` + "\n", "holds 2 records but accounts for 1"},
		{"counts that do not add up", ev + `{"attempts":1,"summary":{"attempts":3,"denied":1,"itemized":1}}` + "\n", "do not add up"},
		{"unaccounted", ev + `{"attempts":1,` + one + `,"unaccounted":"GET a.test:443 still open"}` + "\n", "could not account for every connection: GET a.test:443 still open"},
		{"garbage", ev + "not json\n", "the gateway's log"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ReadSidecarLog(strings.NewReader(c.log))
			if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}
