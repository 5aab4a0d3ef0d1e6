package agentmachine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/machine"
)

// remoteSession is a session env whose service is on another machine (an ssh:// connection):
// its gateway runs in a sidecar, with programs shipped into a volume.
func remoteSession(t *testing.T, e *fakeEngine) *sessionEnv {
	se := newSessionEnv(t, e, nil, gatewayNetwork)
	se.profile.Spec.Mounts = nil // paths of this host: refused on another machine's service
	se.session.Connect = func(context.Context, machine.Ref) (Engine, Connection, error) {
		return e, Connection{URI: "ssh://dev@build-host:22/run/user/1000/podman/podman.sock", Source: "--connection"}, nil
	}
	se.session.Ship = func(arch string) (helper.Shipment, error) {
		digest := func(s string) string { sum := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(sum[:]) }
		return helper.Shipment{HelperDigest: digest("helper-" + arch), GatewayDigest: digest("gateway-" + arch),
			Load: func() ([]byte, []byte, error) { return []byte("helper-" + arch), []byte("gateway-" + arch), nil }}, nil
	}
	return se
}

const sidecarLogOK = `{"time":"2026-12-02T00:00:00Z","method":"CONNECT","host":"registry.npmjs.org","port":443,"address":"104.16.0.1","verdict":"allowed","rule":"registry.npmjs.org:443","source":"profile","bytesOut":10,"bytesIn":20,"durationNs":5}
{"time":"2026-12-02T00:00:01Z","method":"CONNECT","host":"elsewhere.test","port":443,"verdict":"denied","reason":"not allowed","bytesOut":0,"bytesIn":0,"durationNs":0}
{"attempts":2,"summary":{"attempts":2,"allowed":1,"denied":1,"itemized":2,"destinations":[{"host":"registry.npmjs.org","port":443,"allowed":1,"bytesOut":10,"bytesIn":20},{"host":"elsewhere.test","port":443,"denied":1}]}}
`

// TestSidecarPlan: on another machine, the plan gives the gateway a container of its own —
// the service's host network, otherwise hardened, the rules as its argument — and the
// session's container no network, the socket's volume read-only and the helper from the
// shipped programs' volume.
func TestSidecarPlan(t *testing.T) {
	se := remoteSession(t, &fakeEngine{present: true})
	pl, err := se.session.Plan(context.Background(), se.profile, SessionRequest{Tool: "codex", Repo: se.repo})
	if err != nil {
		t.Fatal(err)
	}
	sc := pl.Egress.Sidecar
	if sc == nil || pl.Egress.Socket != "/run/sourceos-egress/gateway.sock" {
		t.Fatalf("egress plan %+v", pl.Egress)
	}
	side, agent := sc.Container, pl.Container
	if side.Network != "host" || !side.ReadOnlyRoot || !side.NoNewPrivileges || strings.Join(side.CapDrop, ",") != "ALL" || side.User != agent.User || side.UserNS != agent.UserNS {
		t.Errorf("sidecar spec %+v", side)
	}
	if side.Command[0] != "/run/sourceos-programs/sourceos-gateway" || side.Command[1] != "/run/sourceos-egress/gateway.sock" || side.Command[4] != "/run/sourceos-egress/egress.jsonl" {
		t.Errorf("sidecar command %v", side.Command)
	}
	// The repository's volume (nothing of this host is mounted there), the tool's state
	// volume, then the gateway's and the programs'.
	if agent.Network != "none" || volumeSummary(agent.Volumes) != pl.Workspace.Volume+"->/workspace:rw sosctl-state-t-codex->/run/sourceos-state:rw "+sc.Volume+"->/run/sourceos-egress:ro "+sc.Programs+"->/run/sourceos-programs:ro" || len(agent.Mounts) != 0 {
		t.Errorf("agent network %s, volumes %s", agent.Network, volumeSummary(agent.Volumes))
	}
	if volumeSummary(side.Volumes) != sc.Programs+"->/run/sourceos-programs:ro "+sc.Volume+"->/run/sourceos-egress:rw" {
		t.Errorf("sidecar volumes %s", volumeSummary(side.Volumes))
	}
	if pl.Helper == nil || pl.Helper.Volume != sc.Programs || sc.Arch != "amd64" {
		t.Errorf("helper %+v, arch %s", pl.Helper, sc.Arch)
	}
	spec := withHelper(agent, *pl.Helper, container.Image{}, "n", pl.Egress.helperArgs()...)
	if spec.Command[0] != "/run/sourceos-programs/sourceos-helper" || len(spec.Mounts) != len(agent.Mounts) {
		t.Errorf("helper from the volume: command %v, mounts %v", spec.Command[:1], spec.Mounts)
	}
	// A different program version is a different volume; the same one is shared.
	other := programsVolume(ShippedRef{Arch: "arm64", HelperDigest: sc.HelperDigest, GatewayDigest: sc.GatewayDigest})
	if other == sc.Programs || programsVolume(ShippedRef{Arch: sc.Arch, HelperDigest: sc.HelperDigest, GatewayDigest: sc.GatewayDigest}) != sc.Programs {
		t.Error("programs volumes are not named by arch and digests")
	}
}

func volumeSummary(vs []container.Volume) string {
	var out []string
	for _, v := range vs {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		out = append(out, v.Name+"->"+v.Target+":"+mode)
	}
	return strings.Join(out, " ")
}

// TestSidecarSessionLifecycle: the programs are shipped once (tar into a volume), the sidecar
// starts and says ready before the session's container exists, is stopped after it, and its
// log — read from the volume — is the session's egress record; the volumes and the sidecar
// are removed, the programs' volume kept for the next session.
func TestSidecarSessionLifecycle(t *testing.T) {
	log := sidecarLogOK
	e := &fakeEngine{present: true, sidecarOut: "ready /run/sourceos-egress/gateway.sock\n", sidecarLog: &log}
	se := remoteSession(t, e)
	res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"})
	if err != nil {
		t.Fatalf("%v\n%s", err, se.errOut)
	}
	calls := e.sessionCalls()
	// The gateway (programs shipped, its volume, its container), the repository shipped to
	// its volume, the session; afterwards the repository's volume and the gateway's log
	// exported.
	// The session's stop and the end of the sidecar overlap: the waits between the two
	// exports are in either order, so they are not compared.
	want := "image volume? volume+ import volume+ create inspect attach start volume+ import volume? volume+ create inspect attach start wait inspect execs stop"
	after, _, _ := strings.Cut(strings.TrimPrefix(calls, want), " remove")
	if !strings.HasPrefix(calls, want) || strings.ReplaceAll(after, " wait", "") != " export export" {
		t.Errorf("calls:\n got %s\nwant %s, waits, export export, the removals", calls, want)
	}
	for _, gone := range []string{"remove", "volume-"} {
		if strings.Count(calls, gone) < 1 {
			t.Errorf("no %s in %s", gone, calls)
		}
	}
	if _, ok := e.volumes["sosctl-state-t-codex"]; len(e.volumes) != 2 || !ok {
		t.Errorf("volumes left: %v (want only the programs' and the tool's state)", volumeNames(e.volumes))
	}
	for name, data := range e.volumes {
		if name == "sosctl-state-t-codex" {
			continue
		}
		tr := tar.NewReader(bytes.NewReader(data))
		var files []string
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			b, _ := io.ReadAll(tr)
			files = append(files, h.Name+"="+string(b))
		}
		if strings.Join(files, ",") != "sourceos-helper=helper-amd64,sourceos-gateway=gateway-amd64" {
			t.Errorf("volume %s holds %v", name, files)
		}
	}
	pred := se.verified(t, res)
	if pred.Egress == nil || pred.Egress.Attempts != 2 || pred.Egress.Allowed != 1 || pred.Egress.Denied != 1 {
		t.Errorf("egress record %+v", pred.Egress)
	}
	// A second session finds the programs shipped, and checks them (export) rather than
	// shipping them again.
	e.calls = nil
	if _, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"}); err != nil {
		t.Fatal(err)
	}
	if calls := e.sessionCalls(); !strings.HasPrefix(calls, "image volume? export volume+ create") {
		t.Errorf("second session shipped again: %s", calls)
	}
	// A volume of that name holding other programs (made by anyone who can use the service)
	// is replaced before the session runs.
	var fake bytes.Buffer
	tw := tar.NewWriter(&fake)
	for _, name := range []string{shippedHelper, shippedGateway} {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: 4})
		_, _ = tw.Write([]byte("evil"))
	}
	_ = tw.Close()
	for name := range e.volumes {
		if strings.HasPrefix(name, "sosctl-programs-") {
			e.volumes[name] = fake.Bytes()
		}
	}
	e.calls = nil
	if _, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"}); err != nil {
		t.Fatal(err)
	}
	if calls := e.sessionCalls(); !strings.HasPrefix(calls, "image volume? export volume- volume+ import volume+ create") {
		t.Errorf("a volume of other programs was not replaced: %s", calls)
	}
}

// TestSidecarFailuresFailTheSession: a sidecar that never says ready, a log cut short, or a
// log naming an unaccounted connection each fail the session (closed), and it is recorded.
func TestSidecarFailuresFailTheSession(t *testing.T) {
	cut := strings.SplitAfter(sidecarLogOK, "\n")[0]
	unaccounted := strings.Replace(sidecarLogOK, `{"attempts":2,`, `{"attempts":2,"unaccounted":"CONNECT a.test:443 still open",`, 1)
	for _, c := range []struct {
		name, out string
		log       *string
		want      string
	}{
		{"never ready", "sourceos-gateway: listen: permission denied\n", &unaccounted, "it exited before accepting connections"},
		{"log cut short", "ready x\n", &cut, "ends without its account"},
		{"no log", "ready x\n", nil, "egress.jsonl is not there"},
		{"unaccounted", "ready x\n", &unaccounted, "CONNECT a.test:443 still open"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := &fakeEngine{present: true, sidecarOut: c.out, sidecarLog: c.log}
			se := remoteSession(t, e)
			res, err := se.run(t, context.Background(), SessionRequest{Tool: "codex"})
			var ge *GatewayError
			if !errors.As(err, &ge) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a gateway error with %q", err, c.want)
			}
			if pred := se.verified(t, res); pred.Session.Outcome != "failed" {
				t.Errorf("outcome %s", pred.Session.Outcome)
			}
			if _, ok := e.volumes[res.Plan.Egress.Sidecar.Volume]; ok {
				t.Errorf("the session's egress volume is left: %v", volumeNames(e.volumes))
			}
		})
	}
}

// TestStatusShowsTheGatewaySidecar: status lists a session's gateway sidecar with its role in
// the tool column, never as a tool-less session.
func TestStatusShowsTheGatewaySidecar(t *testing.T) {
	e := &fakeEngine{present: true, listed: []container.Summary{
		{Name: "sosctl-codex-s1", Labels: map[string]string{LabelManaged: "true", LabelSession: "s1", LabelTool: "codex"}},
		{Name: "sosctl-codex-s1-gateway", Labels: map[string]string{LabelManaged: "true", LabelSession: "s1", LabelRole: "egress-gateway"}},
	}}
	se := remoteSession(t, e)
	r, err := Status(context.Background(), StatusDeps{Connect: se.session.Connect, Now: se.session.Now}, se.profile)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sessions) != 2 || r.Sessions[1].Tool != "egress-gateway" || r.Sessions[0].Tool != "codex" {
		t.Errorf("sessions %+v", r.Sessions)
	}
}

func volumeNames(m map[string][]byte) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}
