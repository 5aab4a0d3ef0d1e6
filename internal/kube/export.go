// Package kube exports a session's plan as Kubernetes objects (a Pod, or an agent-sandbox
// Sandbox, with a NetworkPolicy) and checks what `podman kube play` made of them.
package kube

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// Kinds of export (--kube-kind).
const (
	KindPod     = "pod"
	KindSandbox = "sandbox"
)

// Labels and annotations an exported object carries.
const (
	LabelSession    = "sourceos.dev/session"
	LabelProfile    = "sourceos.dev/profile"
	LabelTool       = "sourceos.dev/tool"
	LabelPolicy     = "sourceos.dev/policy-sha256"
	AnnotationBy    = "sourceos.dev/exported-by"
	ContainerName   = "agent"
	DefaultClaim    = "sourceos-workspace"
	workspaceVolume = "workspace"
	// nonRootUID is the uid a pod runs as when the plan's is root's (a rootful session on
	// this host maps root's files; a pod must not run as root).
	nonRootUID = 1000
)

// Options are the export's choices.
type Options struct {
	// Kind is pod (default) or sandbox.
	Kind string
	// Workspace is where the pod finds the repository: "pvc:NAME" (default
	// pvc:sourceos-workspace). A path on this host means nothing to a cluster.
	Workspace string
}

// Export is the objects of one session and what the export could not carry over, as notes
// printed above them.
type Export struct {
	Objects []any
	Notes   []string
}

// ClaimName is the PVC a --kube-workspace value names; an error explains the accepted form.
func ClaimName(workspace string) (string, error) {
	if workspace == "" {
		return DefaultClaim, nil
	}
	name, ok := strings.CutPrefix(workspace, "pvc:")
	if !ok || !validName(name) {
		return "", fmt.Errorf("--kube-workspace %q: use pvc:NAME, NAME a PersistentVolumeClaim's name (lower-case letters, digits and '-', at most 63); the repository on this host cannot be mounted in a cluster", workspace)
	}
	return name, nil
}

// Objects builds the session of pl as Kubernetes objects. It refuses what a cluster cannot
// have without widening the session (a host path mounted by the profile), and notes what it
// leaves out, which only narrows it (the egress gateway, the tool's state volume).
func Objects(pl *agentmachine.Plan, o Options) (*Export, error) {
	claim, err := ClaimName(o.Workspace)
	if err != nil {
		return nil, err
	}
	if o.Kind == "" {
		o.Kind = KindPod
	}
	if o.Kind != KindPod && o.Kind != KindSandbox {
		return nil, fmt.Errorf("--kube-kind %q: use pod or sandbox", o.Kind)
	}
	x := &Export{}
	if err := refuseHostPaths(pl); err != nil {
		return nil, err
	}
	name := strings.ReplaceAll(pl.Container.Name, ".", "-")
	labels := map[string]string{LabelSession: pl.SessionID, LabelProfile: pl.Profile.Name, LabelTool: pl.Tool.Name,
		LabelPolicy: policyLabel(pl.PolicyHash)}
	annotations := map[string]string{AnnotationBy: "sourceosctl agent-machine"}
	spec := x.podSpec(pl, claim)
	meta := metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}
	switch o.Kind {
	case KindSandbox:
		one := int32(1)
		x.Objects = append(x.Objects, &Sandbox{TypeMeta: metav1.TypeMeta{APIVersion: SandboxAPIVersion, Kind: SandboxKind}, ObjectMeta: meta,
			Spec: SandboxSpec{Replicas: &one, PodTemplate: PodTemplate{Spec: spec, Metadata: PodMetadata{Labels: labels, Annotations: annotations}}}})
		x.Notes = append(x.Notes, "a Sandbox of agent-sandbox's "+SandboxAPIVersion+" API (docs/api.md at 01e149d1); its controller must run in the cluster")
	default:
		x.Objects = append(x.Objects, &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta, Spec: spec})
	}
	if np := x.networkPolicy(pl, name); np != nil {
		x.Objects = append(x.Objects, np)
	}
	return x, nil
}

// refuseHostPaths fails on a mount of the profile's: a path on this host, which a cluster
// does not have and an export must not pretend to carry.
func refuseHostPaths(pl *agentmachine.Plan) error {
	if pl.Decision == nil {
		return nil
	}
	var host []string
	for _, m := range pl.Decision.Mounts {
		if m.Allowed && m.Role != policy.RoleWorkspace {
			host = append(host, m.Declared+" → "+m.Target)
		}
	}
	if len(host) > 0 {
		return fmt.Errorf("-o kube: the profile mounts paths of this host (%s), which a cluster does not have; remove them from spec.mounts for the export, or put what they hold in the workspace's volume", strings.Join(host, ", "))
	}
	return nil
}

func (x *Export) podSpec(pl *agentmachine.Plan, claim string) corev1.PodSpec {
	s := pl.Container
	uid, gid := ids(s.User)
	if uid == 0 {
		x.Notes = append(x.Notes, fmt.Sprintf("the session would run as uid 0 on this host (a rootful service maps it); the pod runs as uid %d, gid %d", nonRootUID, nonRootUID))
		uid, gid = nonRootUID, nonRootUID
	}
	no, yes := false, true
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	c := corev1.Container{
		Name: ContainerName, Image: s.Image, Command: s.Command, WorkingDir: s.WorkDir,
		Stdin: s.Stdin, TTY: s.TTY, ImagePullPolicy: corev1.PullIfNotPresent,
		SecurityContext: &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			Privileged:               &no,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			RunAsGroup:               &gid,
			SeccompProfile:           seccomp,
		},
		Resources: resources(s.Limits.CPUs, s.Limits.MemoryBytes),
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: s.Env[k]})
	}
	secretName := strings.ReplaceAll(s.Name, ".", "-") + "-secrets"
	for _, sec := range s.Secrets {
		c.Env = append(c.Env, corev1.EnvVar{Name: sec.EnvVar, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: sec.EnvVar}}})
	}
	if len(s.Secrets) > 0 {
		x.Notes = append(x.Notes, fmt.Sprintf("secrets come from the Secret %s (keys: the variables' names); create it in the cluster: no value is exported", secretName))
	}
	if len(pl.PassEnv) > 0 {
		x.Notes = append(x.Notes, "variables passed from this host's environment are not exported: "+strings.Join(pl.PassEnv, ", "))
	}
	var vols []corev1.Volume
	for i, t := range s.Tmpfs {
		// Named for the session: Podman 4.3's kube play makes a named volume of an emptyDir.
		vname := "tmpfs-" + strconv.Itoa(i) + "-" + sessionSuffix(pl.SessionID)
		vols = append(vols, corev1.Volume{Name: vname, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(t.SizeBytes, resource.BinarySI)}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vname, MountPath: t.Target})
	}
	if target, readOnly, ok := workspaceTarget(pl); ok {
		vols = append(vols, corev1.Volume{Name: workspaceVolume, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: readOnly}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: workspaceVolume, MountPath: target, ReadOnly: readOnly})
		x.Notes = append(x.Notes, fmt.Sprintf("the workspace %s is the PersistentVolumeClaim %s: the repository on this host does not travel (name another with --kube-workspace pvc:NAME)", target, claim))
	}
	if pl.ToolState != nil {
		x.Notes = append(x.Notes, "the tool's state volume "+pl.ToolState.Volume+" is not exported: the tool starts without a login")
	}
	x.Notes = append(x.Notes, fmt.Sprintf("no process limit is exported (pids %d here): a cluster sets it per node (kubelet podPidsLimit)", s.Limits.Pids))
	return corev1.PodSpec{
		Containers:                   []corev1.Container{c},
		Volumes:                      vols,
		RestartPolicy:                corev1.RestartPolicyNever,
		AutomountServiceAccountToken: &no,
		EnableServiceLinks:           &no,
		Hostname:                     s.Hostname,
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &gid, FSGroup: &gid,
			SeccompProfile: seccomp},
	}
}

// networkPolicy denies the pod all traffic unless the profile opens the network. The egress
// gateway is not exported: a NetworkPolicy selects pods, not containers, so a gateway in the
// pod would give the tool the gateway's egress too.
func (x *Export) networkPolicy(pl *agentmachine.Plan, name string) *networkingv1.NetworkPolicy {
	mode := pl.Container.Network
	if pl.Decision != nil {
		mode = pl.Decision.Network
	}
	switch mode {
	case profile.NetworkBridge:
		x.Notes = append(x.Notes, "spec.network: bridge: the pod has the cluster's network, as the profile allows")
		return nil
	case profile.NetworkGateway:
		x.Notes = append(x.Notes, "the egress gateway is not exported: the pod has no network at all (the NetworkPolicy denies all egress), so the profile's allowed hosts are not reachable")
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name + "-deny-all", Labels: map[string]string{LabelSession: pl.SessionID}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelSession: pl.SessionID}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

// workspaceTarget is where the plan mounts the repository, and whether read-only.
func workspaceTarget(pl *agentmachine.Plan) (target string, readOnly, ok bool) {
	if pl.Decision == nil {
		return "", false, false
	}
	for _, m := range pl.Decision.Mounts {
		if m.Role == policy.RoleWorkspace && m.Allowed {
			return m.Target, m.ReadOnly, true
		}
	}
	return "", false, false
}

func resources(cpus float64, memory int64) corev1.ResourceRequirements {
	l := corev1.ResourceList{}
	if cpus > 0 {
		l[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(cpus*1000+0.5), resource.DecimalSI)
	}
	if memory > 0 {
		l[corev1.ResourceMemory] = *resource.NewQuantity(memory, resource.BinarySI)
	}
	return corev1.ResourceRequirements{Limits: l, Requests: l.DeepCopy()}
}

// policyLabel is the policy hash as a label value: its first 32 hex digits. A label value
// holds at most 63 characters, and so does an annotation's for Podman 4.3's kube play (the
// plan and the evidence have the whole hash).
func policyLabel(hash string) string {
	h := strings.TrimPrefix(hash, "sha256:")
	if len(h) > 32 {
		h = h[:32]
	}
	return h
}

// Write prints the export as YAML documents, the notes as comments above them.
func Write(w io.Writer, x *Export) error {
	var b bytes.Buffer
	b.WriteString("# Exported by sourceosctl agent-machine from the session's plan.\n")
	for _, n := range x.Notes {
		b.WriteString("# - " + n + "\n")
	}
	for i, obj := range x.Objects {
		out, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("write the Kubernetes objects: %w", err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(out)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// sessionSuffix is the random end of a session id (its last 12 characters).
func sessionSuffix(id string) string {
	if len(id) > 12 {
		return id[len(id)-12:]
	}
	return id
}

func ids(user string) (uid, gid int64) {
	u, g, _ := strings.Cut(user, ":")
	uid, _ = strconv.ParseInt(u, 10, 64)
	gid, _ = strconv.ParseInt(g, 10, 64)
	return uid, gid
}

func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
