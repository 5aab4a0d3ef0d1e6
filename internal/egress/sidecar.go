package egress

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// RuleText is a rule as written and where it comes from: the form a policy is decided,
// recorded and handed to a gateway in.
type RuleText struct {
	Rule   string `json:"rule"`
	Source string `json:"source"`
}

// Rules is a policy as text.
type Rules struct {
	Allow []RuleText `json:"allow"`
	Deny  []RuleText `json:"deny"`
	// Inject are the secrets injected for their hosts (never their values).
	Inject []Injection `json:"inject,omitempty"`
}

// Policy parses every rule; one that does not parse is an error.
func (r Rules) Policy() (Policy, error) {
	var p Policy
	for _, list := range []struct {
		from []RuleText
		to   *[]Rule
	}{{r.Allow, &p.Allow}, {r.Deny, &p.Deny}} {
		for _, t := range list.from {
			rule, err := ParseRule(t.Rule, t.Source)
			if err != nil {
				return Policy{}, err
			}
			*list.to = append(*list.to, rule)
		}
	}
	return p, nil
}

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path is 108 bytes with
// the terminating NUL).
const maxSocketPath = 107

// Listen listens on a new Unix socket that only uid (or, for -1, this process's user) may use.
// A path longer than a socket address can hold (a deep home directory) is reached through its
// directory's descriptor, /proc/self/fd/N/NAME, which the kernel resolves to the same place.
// The listener never removes the socket: its directory is the caller's to remove.
func Listen(path string, uid int) (net.Listener, error) {
	addr := path
	if len(path) > maxSocketPath {
		dir, err := os.Open(filepath.Dir(path))
		if err != nil {
			return nil, err
		}
		defer dir.Close() // bound once Listen returns
		addr = fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	}
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	if uid >= 0 && uid != os.Getuid() {
		if err := os.Chown(path, uid, -1); err != nil {
			l.Close()
			return nil, fmt.Errorf("give the socket to the container's user %d: %w", uid, err)
		}
	}
	return l, nil
}

// Sidecar is a gateway run as a program of its own, next to the container rather than in
// sourceosctl (a Podman machine, a remote service): it serves on Socket until ctx ends, then
// writes every attempt to Log, one JSON object per line, and a last line that accounts for them.
type Sidecar struct {
	Socket string
	UID    int
	Rules  Rules
	// Ready is told one line once the socket accepts connections.
	Ready io.Writer
	// Log receives the records when the gateway stops.
	Log io.Writer
	// Grace bounds waiting for open connections once ctx ends (5 s when zero).
	Grace time.Duration
	// Values gives the injected secrets' placeholders and values, and the roots the
	// intercepted hosts are verified with besides the system's: one JSON line of SidecarInput
	// (read before serving when Rules inject any); never an argument or a file.
	Values io.Reader
}

// SidecarInput is what a sidecar that injects secrets reads on its standard input.
type SidecarInput struct {
	Secrets []SecretValue `json:"secrets"`
	// Roots are PEM certificates trusted for intercepted hosts besides the system's (the
	// host's SSL_CERT_FILE: a TLS-inspecting proxy's, say).
	Roots string `json:"roots,omitempty"`
}

// SecretValue is an injected secret's placeholder and value, as a sidecar reads them.
type SecretValue struct {
	Name        string `json:"name"`
	Placeholder string `json:"placeholder"`
	Value       string `json:"value"`
}

// CAFile is the session CA's certificate beside the gateway's socket, for the container.
const CAFile = "ca.pem"

// WriteCA puts the CA's certificate in dir (the socket's directory, which the container
// mounts read-only), readable by the container's user; a file already there is an error.
func WriteCA(dir string, ca *CA) error {
	f, err := os.OpenFile(filepath.Join(dir, CAFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(ca.CertPEM())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WithValues fills injections with their placeholders and values, by name; every injection
// must have one.
func WithValues(list []Injection, values []SecretValue) ([]Injection, error) {
	byName := map[string]SecretValue{}
	for _, v := range values {
		byName[v.Name] = v
	}
	out := make([]Injection, len(list))
	for i, in := range list {
		v, ok := byName[in.Name]
		if !ok || v.Value == "" || len(v.Placeholder) != len(v.Value) {
			return nil, fmt.Errorf("no value (or a placeholder of another length) for injected secret %s", in.Name)
		}
		in.Placeholder, in.Value = v.Placeholder, v.Value
		out[i] = in
	}
	return out, nil
}

// Account is the last line of a sidecar's log: how many attempts it itemized above it, the
// counts of all of them, and what it could not account for. A log without it is incomplete.
type Account struct {
	Attempts    int     `json:"attempts"`
	Summary     Summary `json:"summary"`
	Unaccounted string  `json:"unaccounted,omitempty"`
}

// Run serves until ctx ends and writes the log; it fails when it could not start, could not
// write the log, or could not account for every connection.
func (s Sidecar) Run(ctx context.Context) error {
	p, err := s.Rules.Policy()
	if err != nil {
		return err
	}
	g := &Gateway{Policy: p}
	if len(s.Rules.Inject) > 0 {
		var in SidecarInput
		if s.Values == nil {
			return errors.New("secrets are injected, and no values were given")
		}
		line, err := bufio.NewReader(s.Values).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &in)
		}
		if err != nil {
			return fmt.Errorf("read the injected secrets' values: %w", err)
		}
		if g.Inject, err = WithValues(s.Rules.Inject, in.Secrets); err != nil {
			return err
		}
		if in.Roots != "" {
			if g.UpstreamRoots, err = SystemRootsAnd([]byte(in.Roots)); err != nil {
				return err
			}
		}
		if g.CA, err = NewCA(CALifetime); err != nil {
			return err
		}
		if err := WriteCA(filepath.Dir(s.Socket), g.CA); err != nil {
			return err
		}
	}
	l, err := Listen(s.Socket, s.UID)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(l) }()
	fmt.Fprintln(s.Ready, "ready", s.Socket)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		if serveErr == nil {
			serveErr = fmt.Errorf("the gateway stopped serving")
		}
	}
	grace := s.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shutErr := g.Shutdown(sctx)
	events := g.Events()
	acc := Account{Attempts: len(events), Summary: g.Summary()}
	if shutErr != nil {
		acc.Unaccounted = shutErr.Error()
	}
	if err := WriteLog(s.Log, events); err != nil {
		return fmt.Errorf("write the log: %w", err)
	}
	if err := json.NewEncoder(s.Log).Encode(acc); err != nil {
		return fmt.Errorf("write the log: %w", err)
	}
	if serveErr != nil {
		return serveErr
	}
	if shutErr != nil {
		return fmt.Errorf("could not account for every connection: %w", shutErr)
	}
	return nil
}

// WriteLog writes events as the log artifact holds them: one JSON object per line.
func WriteLog(w io.Writer, events []Event) error {
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// ReadSidecarLog reads a sidecar's log: its records and the counts of every attempt, and an
// error when the log is incomplete (no account line, or counts that do not match the records)
// or says connections were unaccounted.
func ReadSidecarLog(r io.Reader) ([]Event, Summary, error) {
	dec := json.NewDecoder(r)
	var events []Event
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return events, Summary{}, fmt.Errorf("the gateway's log ends without its account: it did not stop cleanly")
		} else if err != nil {
			return events, Summary{}, fmt.Errorf("the gateway's log: %w", err)
		}
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(raw, &probe); err != nil {
			return events, Summary{}, fmt.Errorf("the gateway's log: %w", err)
		}
		if _, isEvent := probe["verdict"]; isEvent {
			var e Event
			if err := json.Unmarshal(raw, &e); err != nil {
				return events, Summary{}, fmt.Errorf("the gateway's log: %w", err)
			}
			events = append(events, e)
			continue
		}
		var acc Account
		if err := json.Unmarshal(raw, &acc); err != nil {
			return events, Summary{}, fmt.Errorf("the gateway's log: %w", err)
		}
		s := acc.Summary
		switch {
		case acc.Attempts != len(events) || s.Itemized != len(events):
			return events, s, fmt.Errorf("the gateway's log holds %d records but accounts for %d (its counts itemize %d)", len(events), acc.Attempts, s.Itemized)
		case s.Attempts < s.Itemized || s.Allowed+s.Denied+s.Failed != s.Attempts:
			return events, s, fmt.Errorf("the gateway's counts do not add up: %d attempts, %d allowed, %d denied, %d failed, %d itemized", s.Attempts, s.Allowed, s.Denied, s.Failed, s.Itemized)
		case acc.Unaccounted != "":
			return events, s, fmt.Errorf("could not account for every connection: %s", acc.Unaccounted)
		}
		return events, s, nil
	}
}

// SystemRootsAnd is the system's trusted roots and the PEM certificates extra.
func SystemRootsAnd(extra []byte) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(extra) > 0 && !roots.AppendCertsFromPEM(extra) {
		return nil, errors.New("the extra roots hold no certificate")
	}
	return roots, nil
}
