package agentmachine

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/helper"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// SidecarPlan is the egress gateway's own container, on the service that runs the session's
// container: the only one of the two with a network (the service's host network: a machine's
// VM, a remote host), otherwise as hardened. They share a volume that holds the socket (the
// agent's container mounts it read-only) and, once the gateway stops, its log; the programs
// come from a volume sourceosctl fills once per version (Programs).
type SidecarPlan struct {
	Container container.Spec `json:"container"`
	// Volume holds the socket and the log, for this session only.
	Volume string `json:"volume"`
	ProgramsPlan
}

// ProgramsPlan is the volume of programs shipped to another machine's service: Programs holds
// sourceos-helper and sourceos-gateway for Arch, named by their digests.
type ProgramsPlan struct {
	Programs      string `json:"programs"`
	Arch          string `json:"arch"`
	HelperDigest  string `json:"helperDigest"`
	GatewayDigest string `json:"gatewayDigest"`
}

// planShippedHelper gives a session on another machine's service the helper from the
// programs volume when no gateway sidecar brings it (spec.network none or bridge).
func planShippedHelper(f Facts, pl *Plan) {
	if !f.Remote || f.Shipped == nil || pl.Helper != nil {
		return
	}
	ref := *f.Shipped
	pl.Programs = &ProgramsPlan{Programs: programsVolume(ref), Arch: ref.Arch, HelperDigest: ref.HelperDigest, GatewayDigest: ref.GatewayDigest}
	pl.Helper = &HelperRef{Digest: ref.HelperDigest, Volume: pl.Programs.Programs}
}

// ShippedRef says which programs a session on another machine would ship, by digest.
type ShippedRef struct {
	Arch                        string
	HelperDigest, GatewayDigest string
}

// Names in the shipped-programs volume, and the sidecar's log in the session's volume.
const (
	shippedHelper  = "sourceos-helper"
	shippedGateway = "sourceos-gateway"
	sidecarLog     = "egress.jsonl"
	// sidecarReady bounds waiting for the sidecar to accept connections.
	sidecarReady = 30 * time.Second
	// sidecarStop is how long the stopped sidecar gets to write its log.
	sidecarStop = 10 * time.Second
)

// LabelRole marks a session's other containers (its gateway sidecar).
const LabelRole = "dev.sourceos.agent-machine.role"

// programsVolume names the volume of one version of the shipped programs.
func programsVolume(ref ShippedRef) string {
	sum := sha256.Sum256([]byte(ref.Arch + " " + ref.HelperDigest + " " + ref.GatewayDigest))
	return "sosctl-programs-" + hex.EncodeToString(sum[:6])
}

// planSidecar plans the gateway's container next to the session's, and gives the session's
// container the helper (and its forwarder) from the programs volume.
func planSidecar(p *profile.Profile, f Facts, pl *Plan, proxy string) error {
	if f.Shipped == nil {
		return &MissingError{Component: "egress gateway", Detail: "on " + orDash(f.Connection.URI) + " the gateway runs in a sidecar container, and this sourceosctl was built without the programs it ships there",
			Fix: "build it with make build, or set spec.network to none (no network) or bridge (unfiltered)"}
	}
	ref := *f.Shipped
	programs := programsVolume(ref)
	volume := "sosctl-" + pl.SessionID + "-egress"
	rules, err := json.Marshal(pl.Decision.Egress.Rules())
	if err != nil {
		return err
	}
	sock := path.Join(container.EgressTarget, container.EgressSocket)
	agent := &pl.Container
	side := container.Spec{
		Name:  agent.Name + "-gateway",
		Image: agent.Image,
		Command: []string{path.Join(container.ShippedTarget, shippedGateway), sock, "-1",
			base64.RawURLEncoding.EncodeToString(rules), path.Join(container.EgressTarget, sidecarLog)},
		// HOME set: a running container otherwise gets its user's from the image's passwd,
		// which inspect then shows as unplanned.
		WorkDir: "/", User: agent.User, UserNS: agent.UserNS, Env: map[string]string{"HOME": "/"},
		Mounts: []container.Mount{}, Tmpfs: []container.Tmpfs{},
		Volumes: []container.Volume{
			{Name: programs, Target: container.ShippedTarget, ReadOnly: true},
			{Name: volume, Target: container.EgressTarget, Chown: true},
		},
		Labels: map[string]string{LabelManaged: "true", LabelProfile: p.Metadata.Name, LabelSession: pl.SessionID, LabelRole: "egress-gateway"},
		// The service's own network: the machine's VM, or the remote host.
		Network: "host", CapDrop: agent.CapDrop, CapAdd: agent.CapAdd, NoNewPrivileges: true, ReadOnlyRoot: true,
		Limits: container.Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 256, BestEffort: agent.Limits.BestEffort},
		Init:   true,
		// The injected secrets' values arrive on its standard input.
		Stdin: len(pl.Decision.Egress.Inject) > 0,
	}
	if w := pl.Workspace.Name; w != "" {
		side.Labels[LabelWorkspace] = w
	}
	explicitSettings(&side, f)
	side.Hostname = sessionHostname + "-gateway"
	side.Sysctls = map[string]string{} // network sysctls belong to the host's namespace it shares
	pl.Egress = &EgressPlan{Socket: sock, SocketUID: -1, Proxy: proxy, Sidecar: &SidecarPlan{Container: side, Volume: volume,
		ProgramsPlan: ProgramsPlan{Programs: programs, Arch: ref.Arch, HelperDigest: ref.HelperDigest, GatewayDigest: ref.GatewayDigest}}}
	agent.Volumes = append(agent.Volumes,
		container.Volume{Name: volume, Target: container.EgressTarget, ReadOnly: true},
		container.Volume{Name: programs, Target: container.ShippedTarget, ReadOnly: true})
	pl.Helper = &HelperRef{Digest: ref.HelperDigest, Volume: programs}
	pl.Notes = append(pl.Notes, fmt.Sprintf("egress: the service is not on this host (%s), so the gateway runs there in its own container %s (the service's host network, capabilities dropped, read-only), its socket in volume %s, which this container mounts read-only; the tools' proxy %s is sourceos-helper's forwarder (shipped in volume %s, %s)",
		orDash(f.Connection.URI), side.Name, volume, proxy, programs, ref.Arch))
	return nil
}

// shipPrograms fills the programs volume once: a volume of that name holds these programs.
func (r *sessionRun) shipPrograms(ctx context.Context, sc ProgramsPlan) error {
	exists, err := r.engine.VolumeExists(ctx, sc.Programs)
	if err != nil {
		return err
	}
	if exists {
		// Named by the digests, but anyone who can use the service could have made a volume
		// of that name: what it holds is checked, and replaced when it is not these programs.
		why := r.programsDiffer(ctx, sc)
		if why == "" {
			return nil
		}
		r.event("volume %s does not hold the planned programs (%s): filling it again", sc.Programs, why)
		if err := r.engine.RemoveVolume(ctx, sc.Programs); err != nil {
			return fmt.Errorf("volume %s does not hold the planned programs (%s), and it cannot be removed: %w; remove it with podman --url %s volume rm -f %s",
				sc.Programs, why, err, r.plan.Connection.URI, sc.Programs)
		}
	}
	if r.Ship == nil {
		return errors.New("this sourceosctl carries no programs to ship")
	}
	sh, err := r.Ship(sc.Arch)
	if err != nil {
		return err
	}
	if sh.HelperDigest != sc.HelperDigest || sh.GatewayDigest != sc.GatewayDigest {
		return fmt.Errorf("the programs to ship are not the ones planned (%s, %s)", sh.HelperDigest, sh.GatewayDigest)
	}
	helperBin, gatewayBin, err := sh.Load()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{shippedHelper, helperBin}, {shippedGateway, gatewayBin}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o755, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := r.engine.CreateVolume(ctx, sc.Programs, map[string]string{LabelManaged: "true", LabelRole: "programs"}); err != nil {
		return err
	}
	if err := r.engine.ImportVolume(ctx, sc.Programs, r.plan.Image.Ref, &buf); err != nil {
		_ = r.engine.RemoveVolume(ctx, sc.Programs) // never leave a half-filled one under the name
		return err
	}
	r.event("shipped sourceos-helper and sourceos-gateway (%s) to volume %s", sc.Arch, sc.Programs)
	return nil
}

// programsDiffer says how the programs volume differs from the planned programs ("" when it
// holds them: each file's sha256 is its planned digest).
func (r *sessionRun) programsDiffer(ctx context.Context, sc ProgramsPlan) string {
	var buf bytes.Buffer
	if err := r.engine.ExportVolume(ctx, sc.Programs, r.plan.Image.Ref, &capWriter{w: &buf, left: 256 << 20}); err != nil {
		return err.Error()
	}
	want := map[string]string{shippedHelper: sc.HelperDigest, shippedGateway: sc.GatewayDigest}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err.Error()
		}
		name := strings.TrimPrefix(h.Name, "./")
		if _, ok := want[name]; ok && h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				return err.Error()
			}
			got[name] = "sha256:" + hex.EncodeToString(sum.Sum(nil))
		}
	}
	for name, digest := range want {
		if got[name] != digest {
			return fmt.Sprintf("%s is %s", name, orDash(got[name]))
		}
	}
	return ""
}

// startSidecar starts the gateway's container and waits until it accepts connections; should
// it exit while the session runs, the session is stopped and fails.
func (r *sessionRun) startSidecar(ctx context.Context, sc *SidecarPlan) (func(), error) {
	if err := r.shipPrograms(ctx, sc.ProgramsPlan); err != nil {
		return nil, fmt.Errorf("egress gateway: ship its programs: %w", err)
	}
	if err := r.engine.CreateVolume(ctx, sc.Volume, map[string]string{LabelManaged: "true", LabelSession: r.plan.SessionID}); err != nil {
		return nil, fmt.Errorf("egress gateway: %w", err)
	}
	sg := &sessionGateway{sidecar: sc}
	r.gw = sg
	box := &containerRun{engine: r.engine, spec: sc.Container, image: r.out.Image}
	undo := func() {
		if r.ws != nil && r.ws.kept {
			return // the workspace's gateway: its down stops it
		}
		r.stopGateway()
		if sg.box != nil {
			_ = sg.box.remove(ctx)
		}
		if err := r.engine.RemoveVolume(ctx, sc.Volume); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
		}
	}
	if err := box.create(ctx); err != nil {
		return undo, fmt.Errorf("egress gateway: %w", err)
	}
	sg.box = box
	diffs, err := box.compare(ctx)
	if err != nil {
		return undo, err
	}
	if len(diffs) > 0 {
		r.weakened = true
		return undo, &GatewayError{Err: fmt.Errorf("the Podman service did not create its container as planned: %s", strings.Join(diffs, "; "))}
	}
	var values io.Reader
	if len(r.injected) > 0 { // one line on its standard input, never an argument or a file
		extra, err := r.extraRoots()
		if err != nil {
			return undo, &GatewayError{Err: err}
		}
		line, err := json.Marshal(egress.SidecarInput{Secrets: r.injected, Roots: string(extra)})
		if err != nil {
			return undo, err
		}
		values = bytes.NewReader(append(line, '\n'))
	}
	if err := r.startReady(ctx, box, values, &sg.stderr); err != nil {
		return undo, err
	}
	go func() {
		code, err := r.engine.Wait(context.WithoutCancel(ctx), box.id)
		r.gatewayEnded(fmt.Errorf("its container exited (code %d) %v", code, err))
	}()
	r.event("egress gateway sidecar %s ready: %d allow and %d deny rules", short(box.id), len(r.plan.Decision.Egress.Allow), len(r.plan.Decision.Egress.Deny))
	return undo, nil
}

// startReady attaches to the sidecar (with stdin, the injected secrets' values, when there
// are any), starts it and waits for the line it prints once it accepts connections; its
// standard error goes to stderr, to say why it failed.
func (r *sessionRun) startReady(ctx context.Context, box *containerRun, stdin io.Reader, stderr *syncBuffer) error {
	pr, pw := io.Pipe()
	attached := make(chan bool, 1)
	go func() {
		err := r.engine.Attach(context.WithoutCancel(ctx), box.id, stdin, pw, stderr, attached)
		pw.CloseWithError(err)
	}()
	select {
	case <-attached:
	case <-time.After(sidecarReady):
		return &GatewayError{Err: errors.New("its container could not be attached")}
	}
	if err := r.engine.Start(ctx, box.id); err != nil {
		return fmt.Errorf("egress gateway: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		lines := bufio.NewScanner(pr)
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "ready ") {
				ready <- nil
				_, _ = io.Copy(io.Discard, pr) // keep the stream flowing until it exits
				return
			}
		}
		ready <- fmt.Errorf("it exited before accepting connections: %s", firstNonEmpty(strings.TrimSpace(stderr.String()), fmt.Sprint(lines.Err())))
	}()
	select {
	case err := <-ready:
		if err != nil {
			return &GatewayError{Err: err}
		}
		return nil
	case <-time.After(sidecarReady):
		return &GatewayError{Err: fmt.Errorf("it did not accept connections within %s", sidecarReady)}
	}
}

// stopSidecar stops the gateway's container (it writes its log on SIGTERM) and reads the log
// from the volume: a log cut short or naming a connection it could not account for is the
// session's failure.
func (r *sessionRun) stopSidecar(sg *sessionGateway) {
	ctx := context.Background()
	if sg.box == nil {
		return
	}
	if err := r.engine.Stop(ctx, sg.box.id, sidecarStop); err != nil {
		sg.err = err
		return
	}
	code, err := r.engine.Wait(ctx, sg.box.id)
	if err != nil {
		sg.err = err
		return
	}
	var archive bytes.Buffer
	if err := r.engine.ExportVolume(ctx, sg.sidecar.Volume, r.plan.Image.Ref, &archive); err != nil {
		sg.err = err
		return
	}
	log, err := fileInTar(&archive, sidecarLog)
	if err != nil {
		sg.err = fmt.Errorf("its log: %w", err)
		return
	}
	sg.events, sg.summary, sg.err = egress.ReadSidecarLog(bytes.NewReader(log))
	if sg.err == nil && code != 0 {
		sg.err = fmt.Errorf("its container exited with code %d", code)
	}
}

// fileInTar returns the file called name from a tar archive.
func fileInTar(r io.Reader, name string) ([]byte, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s is not there", name)
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) == name && h.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 1<<30))
		}
	}
}

// ShipFunc returns the programs a session ships to a service of an architecture.
type ShipFunc func(arch string) (helper.Shipment, error)
