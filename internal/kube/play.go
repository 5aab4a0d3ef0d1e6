package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/fileerr"
	"github.com/sourceos/sourceosctl/internal/podman"
)

// Manifest is what a kube play runs: one Pod and the NetworkPolicies beside it.
type Manifest struct {
	Pod      *corev1.Pod
	Policies []*networkingv1.NetworkPolicy
}

// InputError is a manifest that cannot be played: where, what is wrong and how to fix it.
type InputError = fileerr.Error

// Decode reads a manifest strictly: every document is a Pod or a NetworkPolicy decoded
// into Kubernetes' own types with no unknown field, and there is exactly one Pod.
func Decode(file string, data []byte) (*Manifest, error) {
	m := &Manifest{}
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		var doc yamlv3.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &InputError{File: file, Err: fmt.Errorf("not YAML: %w", err)}
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			continue // an empty document (a trailing ---)
		}
		line := doc.Content[0].Line
		var head struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
		}
		if err := doc.Decode(&head); err != nil {
			return nil, &InputError{File: file, Line: line, Err: fmt.Errorf("document %d is not an object: %w", n, err)}
		}
		var plain any // a repeated key fails here: the conversion below would keep the last
		if err := doc.Decode(&plain); err != nil {
			msg, at := err.Error(), line
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				at, _ = strconv.Atoi(m[1])
				msg = m[2]
			}
			return nil, &InputError{File: file, Line: at, Err: fmt.Errorf("document %d: %s", n, msg)}
		}
		raw, err := yamlv3.Marshal(&doc)
		if err != nil {
			return nil, &InputError{File: file, Line: line, Err: err}
		}
		bad := func(err error) error {
			return &InputError{File: file, Line: fieldLine(&doc, err, line), Err: fmt.Errorf("document %d (%s %s): %w", n, head.APIVersion, head.Kind, err)}
		}
		switch {
		case head.APIVersion == "v1" && head.Kind == "Pod":
			if m.Pod != nil {
				return nil, &InputError{File: file, Line: line, Err: fmt.Errorf("document %d is a second Pod", n), Fix: "play one session's pod at a time"}
			}
			m.Pod = &corev1.Pod{}
			if err := strictDecode(raw, m.Pod); err != nil {
				return nil, bad(err)
			}
		case head.APIVersion == "networking.k8s.io/v1" && head.Kind == "NetworkPolicy":
			np := &networkingv1.NetworkPolicy{}
			if err := strictDecode(raw, np); err != nil {
				return nil, bad(err)
			}
			m.Policies = append(m.Policies, np)
		case head.Kind == SandboxKind:
			return nil, &InputError{File: file, Line: line, Err: fmt.Errorf("document %d is an agent-sandbox Sandbox, which needs its controller in a cluster", n),
				Fix: "export with --kube-kind pod to play it here"}
		default:
			return nil, &InputError{File: file, Line: line, Err: fmt.Errorf("document %d is a %s %s, not a Pod or a NetworkPolicy", n, head.APIVersion, head.Kind),
				Fix: "play the objects `--dry-run -o kube` exports"}
		}
	}
	if m.Pod == nil {
		return nil, &InputError{File: file, Err: errors.New("no Pod in the manifest"), Fix: "export one with --dry-run -o kube"}
	}
	return m, nil
}

// fieldLine is the line of the field a strict decoding error names (unknown field
// "spec.containers[0].x"), else def.
func fieldLine(doc *yamlv3.Node, err error, def int) int {
	_, rest, ok := strings.Cut(err.Error(), ` field "`)
	if !ok {
		return def
	}
	path, _, _ := strings.Cut(rest, `"`)
	node := doc
	if node.Kind == yamlv3.DocumentNode && len(node.Content) > 0 {
		node = node.Content[0]
	}
	for _, part := range strings.Split(path, ".") {
		key, index, _ := strings.Cut(part, "[")
		node = child(node, key)
		for node != nil && index != "" {
			var i int
			_, _ = fmt.Sscanf(index, "%d]", &i)
			if node.Kind != yamlv3.SequenceNode || i >= len(node.Content) {
				return def
			}
			node = node.Content[i]
			_, index, _ = strings.Cut(index, "[")
		}
		if node == nil {
			return def
		}
	}
	return node.Line
}

// child is the value of a mapping's key (its key node for the line), nil if absent.
func child(m *yamlv3.Node, key string) *yamlv3.Node {
	if m == nil || m.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := *m.Content[i+1]
			if v.Kind == yamlv3.ScalarNode {
				v.Line = m.Content[i].Line
			}
			return &v
		}
	}
	return nil
}

// yamlLine is where yaml.v3's decoding errors say the problem is.
var yamlLine = regexp.MustCompile(`line (\d+): ([^\n]*)`)

// strictDecode decodes a YAML document into a Kubernetes type the way the API server does:
// field names match case-sensitively, and an unknown or repeated field is an error.
func strictDecode(doc []byte, v any) error {
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// Engine is what kube play needs of a Podman service (internal/podman's Client).
type Engine interface {
	PlayKube(ctx context.Context, manifest []byte) ([]podman.PlayedPod, error)
	Inspect(ctx context.Context, id string) (container.Observed, []byte, error)
	Image(ctx context.Context, ref string) (container.Image, bool, error)
	StartPod(ctx context.Context, name string) error
	RemovePod(ctx context.Context, name string) error
	RemoveVolume(ctx context.Context, name string) error
	VolumeExists(ctx context.Context, name string) (bool, error)
	VolumeSource(ctx context.Context, name string) (driver string, options map[string]string, err error)
	CreateTmpfsVolume(ctx context.Context, name string, size int64, uid, gid int64, labels map[string]string) error
	Execer
}

// Played is a pod kube play created and the checks found as governed.
type Played struct {
	Pod        string                `json:"pod"`
	Containers []podman.PodContainer `json:"containers"`
	Started    bool                  `json:"started"`
	// Volumes are the emptyDirs' volumes, which outlive the pod.
	Volumes []string `json:"volumes"`
}

// WeakenedError lists what the server created otherwise than a governed session must be.
type WeakenedError struct {
	Pod   string
	Diffs []string
	// Started: the difference was seen from inside, once the pod ran; NotCreated: in the
	// manifest, before anything was created.
	Started, NotCreated bool
}

func (e *WeakenedError) Error() string {
	removed := "it was removed before anything ran in it"
	switch {
	case e.Started:
		removed = "it was stopped and removed"
	case e.NotCreated:
		removed = "nothing was created"
	}
	return fmt.Sprintf("pod %s is not governed: %s; %s", e.Pod, strings.Join(e.Diffs, "; "), removed)
}

// Play creates the manifest's pod without starting it, compares each container the server
// made with what a governed session must be (Governed), and starts the pod only when nothing
// differs; otherwise it removes the pod and returns a WeakenedError. The comparison is
// against the session's invariants, not the manifest's own settings: a manifest edited to
// add a capability or a host path is refused by what the server made of it.
func Play(ctx context.Context, e Engine, m *Manifest, start bool) (*Played, error) {
	diffs := append(Unenforced(m.Pod), policyDiffs(m)...)
	claimDiffs, err := claims(ctx, e, m.Pod)
	if err != nil {
		return nil, err
	}
	if diffs = append(diffs, claimDiffs...); len(diffs) > 0 {
		return nil, &WeakenedError{Pod: m.Pod.Name, Diffs: diffs, NotCreated: true}
	}
	if err := emptyDirs(ctx, e, m.Pod); err != nil {
		return nil, err
	}
	manifest, err := m.encode()
	if err != nil {
		return nil, err
	}
	pods, err := e.PlayKube(ctx, manifest)
	if err != nil || len(pods) == 0 {
		for _, p := range pods {
			err = errors.Join(err, remove(ctx, e, m.Pod, p.Name))
		}
		if len(pods) == 0 {
			removeEmptyDirs(ctx, e, m.Pod) // made above for a pod that never came
		}
		return nil, err
	}
	p := pods[0]
	diffs, err = check(ctx, e, m.Pod, p)
	if err == nil && len(diffs) > 0 {
		err = &WeakenedError{Pod: p.Name, Diffs: diffs}
	}
	if err == nil && start {
		err = e.StartPod(ctx, p.Name)
		if err == nil {
			err = checkInside(ctx, e, m.Pod, p)
		}
	}
	if err != nil {
		return nil, errors.Join(err, remove(ctx, e, m.Pod, p.Name))
	}
	played := &Played{Pod: p.Name, Containers: p.Containers, Started: start}
	for _, v := range m.Pod.Spec.Volumes {
		if v.EmptyDir != nil {
			played.Volumes = append(played.Volumes, v.Name)
		}
	}
	return played, nil
}

// Unenforced lists what the manifest asks for that widens a pod but that a Podman server may
// ignore, so that what it created cannot show it — a cluster would apply it: the host's
// namespaces, an unmasked /proc, a seccomp or AppArmor profile other than the runtime's, a
// shared process namespace, the cluster's credentials, runtime class, node or devices — and
// what no export carries: annotations (kube play acts on some), another Secret. Everything a
// server does apply (capabilities, privileged, escalation, the root file system, the user,
// host paths, limits) is left to the comparison with what it created, which proves it.
func Unenforced(pod *corev1.Pod) []string {
	var d []string
	s := pod.Spec
	for name, on := range map[string]bool{"hostNetwork": s.HostNetwork, "hostPID": s.HostPID, "hostIPC": s.HostIPC,
		"shareProcessNamespace": s.ShareProcessNamespace != nil && *s.ShareProcessNamespace} {
		if on {
			d = append(d, "the manifest sets "+name+": true")
		}
	}
	if s.HostUsers != nil && *s.HostUsers {
		d = append(d, "the manifest sets hostUsers: true")
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		d = append(d, "the manifest does not set automountServiceAccountToken: false (the pod would get the cluster's credentials)")
	}
	for name, set := range map[string]string{"serviceAccountName": s.ServiceAccountName, "runtimeClassName": ptrString(s.RuntimeClassName), "nodeName": s.NodeName} {
		if set != "" {
			d = append(d, fmt.Sprintf("the manifest sets %s: %s", name, set))
		}
	}
	if len(s.ResourceClaims) > 0 {
		d = append(d, "the manifest sets resourceClaims (devices from the cluster)")
	}
	for k := range pod.Annotations {
		if !strings.HasPrefix(k, "sourceos.dev/") {
			d = append(d, fmt.Sprintf("the manifest sets the annotation %s, which Podman's kube play or a cluster may act on (an export sets only sourceos.dev/ ones)", k))
		}
	}
	profiles := func(where string, sp *corev1.SeccompProfile, ap *corev1.AppArmorProfile) {
		if sp != nil && sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			d = append(d, fmt.Sprintf("the manifest sets %s seccompProfile %s (want RuntimeDefault)", where, sp.Type))
		}
		if ap != nil && ap.Type != corev1.AppArmorProfileTypeRuntimeDefault {
			d = append(d, fmt.Sprintf("the manifest sets %s appArmorProfile %s (want RuntimeDefault or none)", where, ap.Type))
		}
	}
	if sc := s.SecurityContext; sc != nil {
		profiles("the pod's", sc.SeccompProfile, sc.AppArmorProfile)
	}
	for _, c := range slices.Concat(s.InitContainers, s.Containers) {
		if sc := c.SecurityContext; sc != nil {
			profiles(c.Name+"'s", sc.SeccompProfile, sc.AppArmorProfile)
			if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
				d = append(d, fmt.Sprintf("the manifest sets %s's procMount %s", c.Name, *sc.ProcMount))
			}
		}
		for _, env := range c.Env {
			if ref := env.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name != pod.Name+"-secrets" {
				d = append(d, fmt.Sprintf("the manifest gives %s the Secret %s (an export reads only %s-secrets)", c.Name, ref.SecretKeyRef.Name, pod.Name))
			}
		}
	}
	slices.Sort(d)
	return d
}

// policyDiffs names the NetworkPolicies that let traffic in or out: kube play gives the pod no
// network whatever they say, but a cluster would apply them.
func policyDiffs(m *Manifest) []string {
	var d []string
	for _, np := range m.Policies {
		if len(np.Spec.Egress) > 0 || len(np.Spec.Ingress) > 0 {
			d = append(d, fmt.Sprintf("the NetworkPolicy %s allows traffic (an export denies all of it)", np.Name))
		}
	}
	return d
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// encode is the manifest as decoded — what kube play is given, so that Podman's parser and
// this one cannot read two different pods from the same bytes.
func (m *Manifest) encode() ([]byte, error) {
	var out []byte
	objs := []any{m.Pod}
	for _, np := range m.Policies {
		objs = append(objs, np)
	}
	for i, obj := range objs {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// claims checks that each PersistentVolumeClaim the pod mounts is a volume on the service
// (kube play would make an empty one owned by root, which the pod's user cannot write).
func claims(ctx context.Context, e Engine, pod *corev1.Pod) ([]string, error) {
	var diffs []string
	n := 0
	for _, v := range pod.Spec.Volumes {
		pvc := v.PersistentVolumeClaim
		if pvc == nil {
			continue
		}
		if n++; n > 1 {
			diffs = append(diffs, fmt.Sprintf("volume %s is a second PersistentVolumeClaim (an export has one: the workspace)", v.Name))
			continue
		}
		if strings.HasPrefix(pvc.ClaimName, "sosctl-") {
			diffs = append(diffs, fmt.Sprintf("the claim %s names a volume of sourceosctl's own (a tool's login, another session's files)", pvc.ClaimName))
			continue
		}
		exists, err := e.VolumeExists(ctx, pvc.ClaimName)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, &agentmachine.MissingError{Component: "volume " + pvc.ClaimName,
				Detail: "the pod's PersistentVolumeClaim " + pvc.ClaimName + " has no volume on this Podman service",
				Fix:    "podman volume create " + pvc.ClaimName + " && podman volume import " + pvc.ClaimName + " REPO.tar (its files owned by the pod's user)"}
		}
		driver, opts, err := e.VolumeSource(ctx, pvc.ClaimName)
		if err != nil {
			return nil, err
		}
		if driver != "" && driver != "local" || opts["device"] != "" || opts["type"] != "" && opts["type"] != "tmpfs" || strings.Contains(opts["o"], "bind") {
			diffs = append(diffs, fmt.Sprintf("the claim %s is a volume of driver %q with options %v: a host path or device, not a volume of its own", pvc.ClaimName, driver, opts))
		}
	}
	return diffs, nil
}

// emptyDirs creates the pod's memory-backed emptyDirs as tmpfs volumes its user owns, before
// kube play would make root-owned directories of them. A volume of that name must not exist
// yet: one made by anyone else could be anything (a bind of a host directory).
func emptyDirs(ctx context.Context, e Engine, pod *corev1.Pod) error {
	uid, gid := -1, -1
	for _, c := range pod.Spec.Containers {
		u, g := runAs(pod, c)
		uid, gid = int(u), int(g)
	}
	var made []string
	for _, v := range pod.Spec.Volumes {
		d := v.EmptyDir
		if d == nil {
			continue
		}
		err := func() error {
			if d.Medium != corev1.StorageMediumMemory || d.SizeLimit == nil {
				return fmt.Errorf("the emptyDir %s is not memory-backed with a sizeLimit, as exported", v.Name)
			}
			if exists, err := e.VolumeExists(ctx, v.Name); err != nil || exists {
				return errors.Join(err, fmt.Errorf("a volume %s exists already, and an emptyDir is new to its pod: rename the emptyDir, or export the session again (a new session names new ones)", v.Name))
			}
			return e.CreateTmpfsVolume(ctx, v.Name, d.SizeLimit.Value(), int64(uid), int64(gid), map[string]string{LabelSession: pod.Labels[LabelSession]})
		}()
		if err != nil {
			for _, name := range made {
				_ = e.RemoveVolume(ctx, name)
			}
			return err
		}
		made = append(made, v.Name)
	}
	return nil
}

// remove removes a refused pod and the volumes kube play made of its emptyDirs (Podman
// 4.3 makes named volumes of them, which would outlive the pod).
func remove(ctx context.Context, e Engine, pod *corev1.Pod, name string) error {
	err := e.RemovePod(ctx, name)
	removeEmptyDirs(ctx, e, pod)
	return err
}

func removeEmptyDirs(ctx context.Context, e Engine, pod *corev1.Pod) {
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil {
			_ = e.RemoveVolume(ctx, v.Name) // absent on a server that made none
		}
	}
}

// check compares what the server made of the pod with the governed form of each container.
func check(ctx context.Context, e Engine, pod *corev1.Pod, p podman.PlayedPod) ([]string, error) {
	var diffs []string
	infra, _, err := e.Inspect(ctx, p.Infra)
	if err != nil {
		return nil, err
	}
	if infra.Network != "none" {
		diffs = append(diffs, fmt.Sprintf("the pod's network is %q (want none)", infra.Network))
	}
	for _, ns := range []string{"ipc", "uts", "pid"} { // a session's own; cgroup follows the host's version
		if infra.Namespaces[ns] == "host" {
			diffs = append(diffs, fmt.Sprintf("the pod's %s namespace is the host's", ns))
		}
	}
	if len(p.Containers) != len(pod.Spec.Containers)+len(pod.Spec.InitContainers) {
		diffs = append(diffs, fmt.Sprintf("the server made %d containers of a pod with %d", len(p.Containers), len(pod.Spec.Containers)+len(pod.Spec.InitContainers)))
	}
	for _, pc := range p.Containers {
		got, _, err := e.Inspect(ctx, pc.ID)
		if err != nil {
			return nil, err
		}
		c, ok := podContainer(pod, pc.Name)
		if !ok {
			diffs = append(diffs, fmt.Sprintf("container %s is not in the manifest", pc.Name))
			continue
		}
		img, _, err := e.Image(ctx, c.Image)
		if err != nil {
			return nil, err
		}
		for _, d := range Governed(pod, c, p.Infra, got, img) {
			diffs = append(diffs, c.Name+": "+d)
		}
	}
	return diffs, nil
}

// checkInside checks each running container of the started pod from inside (Inside); one
// that already exited cannot be, and says so.
func checkInside(ctx context.Context, e Engine, pod *corev1.Pod, p podman.PlayedPod) error {
	var diffs []string
	for _, pc := range p.Containers {
		c, _ := podContainer(pod, pc.Name)
		img, _, err := e.Image(ctx, c.Image)
		if err != nil {
			return err
		}
		for _, d := range Inside(ctx, e, pc.ID, pod, c, img) {
			diffs = append(diffs, c.Name+" (inside): "+d)
		}
	}
	if len(diffs) > 0 {
		return &WeakenedError{Pod: p.Name, Diffs: diffs, Started: true}
	}
	return nil
}

// podContainer finds the manifest's container kube play named "POD-NAME".
func podContainer(pod *corev1.Pod, created string) (corev1.Container, bool) {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if created == pod.Name+"-"+c.Name {
			return c, true
		}
	}
	return corev1.Container{}, false
}

// Governed compares a container kube play made from c with what a governed session is: no
// capability, no-new-privileges, a read-only root, a non-root user, no host path, no device,
// no host namespace, the pod's network (none), the manifest's limits, volumes, environment
// and hostname. It reuses the session's post-create comparison (container.Verify) with the
// invariants as the expectation, so a weakened manifest cannot weaken its own check.
func Governed(pod *corev1.Pod, c corev1.Container, infra string, got container.Observed, img container.Image) []string {
	uid, gid := runAs(pod, c)
	want := container.Spec{
		CapDrop: []string{"ALL"}, CapAdd: []string{}, NoNewPrivileges: true, ReadOnlyRoot: true,
		User: fmt.Sprintf("%d:%d", uid, gid), Network: "container:" + infra, Namespaces: []string{"pid"},
		Hostname: pod.Spec.Hostname, Env: map[string]string{},
	}
	var diffs []string
	if uid <= 0 {
		diffs = append(diffs, "runs as root (want runAsUser, not 0)")
	}
	for _, env := range c.Env {
		switch {
		case env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil:
			want.Secrets = append(want.Secrets, container.Secret{EnvVar: env.Name})
		case env.ValueFrom == nil:
			want.Env[env.Name] = env.Value
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		want.Limits.MemoryBytes = q.Value()
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		want.Limits.CPUs = float64(q.MilliValue()) / 1000
	}
	if want.Limits.MemoryBytes <= 0 || want.Limits.CPUs <= 0 {
		diffs = append(diffs, "no memory or CPU limit (want resources.limits of both)")
	}
	for _, vm := range c.VolumeMounts {
		name, emptyDir, ok := podmanVolume(pod, vm.Name)
		switch {
		case !ok:
		case emptyDir && slices.Contains(got.Tmpfs, vm.MountPath):
			// Podman 5 mounts a memory-backed emptyDir as a tmpfs; 4.3 as the volume made for it.
			want.Tmpfs = append(want.Tmpfs, container.Tmpfs{Target: vm.MountPath})
		default:
			want.Volumes = append(want.Volumes, container.Volume{Name: name, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
		}
	}
	// A pod has no process limit of its own (a cluster sets one per node): whatever the
	// server applies is taken, and the export says so.
	want.Limits.Pids = got.Limits.Pids
	for k, v := range got.Annotations {
		if strings.HasPrefix(k, "sourceos.dev/") && pod.Annotations[k] == v {
			delete(got.Annotations, k) // the export's own, harmless
		}
	}
	// Inside a pod the IPC and UTS namespaces are the infra container's; never the host's.
	for _, ns := range []string{"ipc", "uts"} {
		if mode := got.Namespaces[ns]; mode != "container:"+infra && mode != "private" && mode != "shareable" {
			diffs = append(diffs, fmt.Sprintf("%s namespace is %q (want the pod's)", ns, mode))
		}
	}
	return append(diffs, container.Verify(want, img, got)...)
}

// podmanVolume is the Podman volume kube play makes of a pod volume: a claim's volume is
// named by the claim, an emptyDir's by the volume. Other kinds (hostPath, …) are not, and
// what the server makes of them shows as an unplanned mount.
func podmanVolume(pod *corev1.Pod, name string) (volume string, emptyDir, ok bool) {
	for _, v := range pod.Spec.Volumes {
		if v.Name != name {
			continue
		}
		switch {
		case v.PersistentVolumeClaim != nil:
			return v.PersistentVolumeClaim.ClaimName, false, true
		case v.EmptyDir != nil:
			return v.Name, true, true
		}
	}
	return "", false, false
}

// runAs is the container's user and group, its own settings over the pod's (-1: unset).
func runAs(pod *corev1.Pod, c corev1.Container) (uid, gid int64) {
	uid, gid = -1, -1
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	return uid, gid
}
