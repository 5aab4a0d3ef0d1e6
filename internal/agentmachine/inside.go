package agentmachine

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/guard"
)

// withHelper returns the spec with the helper mounted read-only and the command run through
// it: the helper checks the container from inside against what the spec planned and only then
// becomes the tool. The expectation holds secrets' variable names, never their values. args
// are the helper's options before the tool (EgressPlan.helperArgs).
func withHelper(s container.Spec, h HelperRef, image container.Image, nonce string, args ...string) container.Spec {
	bin := container.HelperTarget
	if h.Volume != "" {
		bin = path.Join(container.ShippedTarget, shippedHelper) // the spec mounts the volume already
		if !hasVolume(s.Volumes, h.Volume) {
			s.Volumes = append(append([]container.Volume{}, s.Volumes...), container.Volume{Name: h.Volume, Target: container.ShippedTarget, ReadOnly: true})
		}
	} else {
		s.Mounts = append(append([]container.Mount{}, s.Mounts...), container.Mount{Source: h.Path, Target: container.HelperTarget, ReadOnly: true})
	}
	e := expectation(s, image, nonce)
	cmd := append([]string{bin, "check", e.Encode()}, args...)
	s.Command = append(append(cmd, "--"), s.Command...)
	return s
}

// expectation is what the container must look like from inside.
func expectation(s container.Spec, image container.Image, nonce string) guard.Expectation {
	uid, gid := userIDs(s.User)
	umask, _ := parseOctal(s.Umask)
	e := guard.NewExpectation(uid, gid, s.Hostname, umask, image.Env)
	e.Nonce = nonce
	for k, v := range s.Env {
		e.Env[k] = v
	}
	for _, sec := range s.Secrets {
		e.EnvNames = append(e.EnvNames, sec.EnvVar)
	}
	if s.ReadOnlyRoot {
		e.ReadOnly = append(e.ReadOnly, "/")
	}
	for _, m := range s.Mounts {
		e.Mounts = append(e.Mounts, m.Target)
		if m.ReadOnly {
			e.ReadOnly = append(e.ReadOnly, m.Target)
		}
	}
	for _, t := range s.Tmpfs {
		e.Mounts = append(e.Mounts, t.Target)
	}
	for _, v := range s.Volumes {
		e.Mounts = append(e.Mounts, v.Target)
		if v.ReadOnly {
			e.ReadOnly = append(e.ReadOnly, v.Target)
		}
	}
	for _, o := range s.Overlays {
		e.Mounts = append(e.Mounts, o.Target)
		e.Overlays = append(e.Overlays, guard.Overlay{Target: o.Target, Lower: o.Source, Upper: o.Upper})
	}
	if l := s.Limits; !l.BestEffort {
		e.Cgroup = &guard.CgroupLimits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs}
	}
	switch s.Network {
	case "none":
		e.Interfaces = []string{"lo"}
	case "bridge":
		e.Interfaces = []string{"lo", "eth0"}
	}
	return e
}

func hasVolume(vs []container.Volume, name string) bool {
	for _, v := range vs {
		if v.Name == name {
			return true
		}
	}
	return false
}

func userIDs(user string) (uid, gid int) {
	u, g, _ := strings.Cut(user, ":")
	uid, _ = strconv.Atoi(u)
	gid, _ = strconv.Atoi(g)
	return uid, gid
}

func parseOctal(s string) (int, error) {
	n, err := strconv.ParseInt(s, 8, 32)
	return int(n), err
}

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// verdictWatch reads the helper's verdict, the first line of its stream, and passes the rest
// through untouched. The verdict line itself is not shown: a refusal becomes the session's
// error. A first line that is not a verdict (the helper never ran) is passed on as it is.
type verdictWatch struct {
	w     io.Writer
	nonce string

	// decidedCh, when not nil, is closed once the first line is decided.
	decidedCh chan struct{}

	mu      sync.Mutex
	decided bool
	line    []byte
	verdict bool
	diffs   []string
}

// watchVerdict puts a verdictWatch on the stream the helper's verdict arrives on — standard
// error, or with a terminal the one stream a terminal has — and returns it with the streams to
// attach.
func watchVerdict(nonce string, tty bool, out, errOut io.Writer) (*verdictWatch, io.Writer, io.Writer) {
	watch := &verdictWatch{nonce: nonce}
	if tty {
		watch.w, out = out, watch
	} else {
		watch.w, errOut = errOut, watch
	}
	return watch, out, errOut
}

// maxVerdict bounds the first line kept while waiting for its end.
const maxVerdict = 64 << 10

func (v *verdictWatch) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.decided {
		return v.w.Write(p)
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 && len(v.line)+len(p) < maxVerdict {
		v.line = append(v.line, p...)
		return len(p), nil
	}
	v.decide()
	rest := p
	if i >= 0 {
		v.line, rest = append(v.line, p[:i+1]...), p[i+1:]
		// An exec's terminal on Podman 4.3 starts with a NUL in its input, which the tty
		// echoes as ^@ before the helper's first line.
		first := strings.TrimLeft(strings.TrimPrefix(string(v.line), "^@"), "\x00")
		v.diffs, v.verdict = guard.ParseVerdict(first, v.nonce)
	}
	if !v.verdict {
		rest = append(v.line, rest...)
	}
	v.line = nil
	if len(rest) > 0 {
		if _, err := v.w.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush passes on a first line that never ended (the stream closed mid-line).
func (v *verdictWatch) flush() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.decided && len(v.line) > 0 {
		_, _ = v.w.Write(v.line)
	}
	v.decide()
	v.line = nil
}

// decide marks the first line decided (with v.mu held).
func (v *verdictWatch) decide() {
	if !v.decided && v.decidedCh != nil {
		close(v.decidedCh)
	}
	v.decided = true
}

// result is whether the helper gave its verdict and, for a refusal, what it named.
func (v *verdictWatch) result() (verdict bool, diffs []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.verdict, v.diffs
}
