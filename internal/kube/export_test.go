package kube

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/policy"
)

const testSession = "20261203t001305.598913z-f1451e3a8721"

// testPlan is a session's plan as NewPlan makes it for a repository on this host: a copy's
// overlay at /workspace, the gateway's socket mounted, two tmpfs paths.
func testPlan(network string) *agentmachine.Plan {
	return &agentmachine.Plan{
		SessionID: testSession, PolicyHash: "sha256:4524a05a5efb67283e0ac39bc9018bad3728892090ff615b0493224aa713c21e",
		Profile: agentmachine.ProfileInfo{Name: "default-linux"}, Tool: agentmachine.ToolPlan{Name: "codex"},
		Container: container.Spec{
			Name: "sosctl-codex-" + testSession, Image: "localhost/sourceos/agent-workspace:latest",
			Command: []string{"codex"}, WorkDir: "/workspace", User: "1000:1000", UserNS: "keep-id",
			Env:      map[string]string{"HOME": "/home/agent", "SOURCEOS_AGENT_SESSION": testSession},
			Secrets:  []container.Secret{{Name: "sosctl-secret-x", EnvVar: "OPENAI_API_KEY"}},
			Mounts:   []container.Mount{{Source: "/home/u/.local/state/sourceos/egress/x", Target: "/run/sourceos-egress", ReadOnly: true}},
			Overlays: []container.Overlay{{Source: "/home/u/dev/app", Target: "/workspace", Upper: "/u", Work: "/w"}},
			Tmpfs:    []container.Tmpfs{{Target: "/tmp", SizeBytes: 512 << 20, Mode: "1777"}, {Target: "/home/agent", SizeBytes: 256 << 20, Mode: "0700", Chown: true}},
			Network:  "none", CapDrop: []string{"ALL"}, CapAdd: []string{}, NoNewPrivileges: true, ReadOnlyRoot: true,
			Limits: container.Limits{CPUs: 1.5, MemoryBytes: 4 << 30, Pids: 1024}, Hostname: "sourceos-agent", Stdin: true,
		},
		Decision: &policy.Decision{Network: network, Mounts: []policy.MountDecision{
			{Role: policy.RoleWorkspace, Declared: "/home/u/dev/app", Target: "/workspace", Allowed: true},
		}},
	}
}

// decodeAll splits the export and decodes each document strictly into Kubernetes' types: an
// unknown or misspelt field fails.
func decodeAll(t *testing.T, out string) (*corev1.Pod, *Sandbox, *networkingv1.NetworkPolicy) {
	t.Helper()
	var pod *corev1.Pod
	var sb *Sandbox
	var np *networkingv1.NetworkPolicy
	for _, doc := range strings.Split(out, "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		var target any
		switch head.Kind {
		case "Pod":
			pod = &corev1.Pod{}
			target = pod
		case "Sandbox":
			sb = &Sandbox{}
			target = sb
		case "NetworkPolicy":
			np = &networkingv1.NetworkPolicy{}
			target = np
		default:
			t.Fatalf("unexpected document kind %q:\n%s", head.Kind, doc)
		}
		if err := strictDecode([]byte(doc), target); err != nil {
			t.Fatalf("strict decode of %s: %v\n%s", head.Kind, err, doc)
		}
	}
	return pod, sb, np
}

func export(t *testing.T, pl *agentmachine.Plan, o Options) string {
	t.Helper()
	x, err := Objects(pl, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, x); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestAPodExportCarriesEveryHardeningAndNoHostPath(t *testing.T) {
	out := export(t, testPlan("none"), Options{Workspace: "pvc:app"})
	pod, sb, np := decodeAll(t, out)
	if pod == nil || sb != nil || np == nil {
		t.Fatalf("want a Pod and a NetworkPolicy:\n%s", out)
	}
	s := pod.Spec
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken || s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("pod spec: token %v, host namespaces %v %v %v", s.AutomountServiceAccountToken, s.HostNetwork, s.HostPID, s.HostIPC)
	}
	psc := s.SecurityContext
	if psc == nil || !*psc.RunAsNonRoot || *psc.RunAsUser != 1000 || *psc.RunAsGroup != 1000 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context: %+v", psc)
	}
	if len(s.Containers) != 1 {
		t.Fatalf("containers: %d", len(s.Containers))
	}
	c := s.Containers[0]
	sc := c.SecurityContext
	if *sc.AllowPrivilegeEscalation || *sc.Privileged || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context: %+v", sc)
	}
	if cpu, mem := c.Resources.Limits.Cpu().MilliValue(), c.Resources.Limits.Memory().Value(); cpu != 1500 || mem != 4<<30 {
		t.Errorf("limits: cpu %dm, memory %d", cpu, mem)
	}
	if c.Image != "localhost/sourceos/agent-workspace:latest" || c.WorkingDir != "/workspace" || strings.Join(c.Command, " ") != "codex" {
		t.Errorf("container: %s %s %v", c.Image, c.WorkingDir, c.Command)
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	for _, v := range s.Volumes {
		switch {
		case v.HostPath != nil:
			t.Errorf("volume %s is a host path", v.Name)
		case v.EmptyDir != nil:
			if v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit == nil || !strings.HasSuffix(v.Name, "f1451e3a8721") {
				t.Errorf("emptyDir %s: %+v (want memory-backed, sized, named for the session)", v.Name, v.EmptyDir)
			}
		case v.PersistentVolumeClaim != nil:
			if v.PersistentVolumeClaim.ClaimName != "app" || mounts["/workspace"] != v.Name {
				t.Errorf("workspace claim %+v mounted %v", v.PersistentVolumeClaim, mounts)
			}
		}
	}
	if mounts["/tmp"] == "" || mounts["/home/agent"] == "" || len(mounts) != 3 {
		t.Errorf("mounts: %v (want /tmp, /home/agent, /workspace only)", mounts)
	}
	if strings.Contains(out, "/home/u") || strings.Contains(out, "sourceos-egress") {
		t.Errorf("a path of this host is in the export:\n%s", out)
	}
	var secret *corev1.EnvVar
	for i, env := range c.Env {
		if env.Name == "OPENAI_API_KEY" {
			secret = &c.Env[i]
		}
	}
	if secret == nil || secret.Value != "" || secret.ValueFrom.SecretKeyRef.Key != "OPENAI_API_KEY" {
		t.Errorf("the secret is not a reference to a Secret: %+v", secret)
	}
	if pod.Labels[LabelSession] != testSession || pod.Labels[LabelPolicy] != "4524a05a5efb67283e0ac39bc9018bad" {
		t.Errorf("labels: %v", pod.Labels)
	}
	for k, v := range pod.Annotations {
		if len(v) > 63 {
			t.Errorf("annotation %s is %d characters: Podman 4.3's kube play refuses more than 63", k, len(v))
		}
	}
	if len(np.Spec.Egress) != 0 || len(np.Spec.Ingress) != 0 || len(np.Spec.PolicyTypes) != 2 || np.Spec.PodSelector.MatchLabels[LabelSession] != testSession {
		t.Errorf("network policy does not deny everything to the pod: %+v", np.Spec)
	}
	for _, note := range []string{"no process limit is exported", "PersistentVolumeClaim app", "Secret sosctl-codex-"} {
		if !strings.Contains(out, note) {
			t.Errorf("the export does not say %q:\n%s", note, out)
		}
	}
}

func TestASandboxExportIsAgentSandboxV1alpha1(t *testing.T) {
	out := export(t, testPlan("gateway"), Options{Kind: KindSandbox})
	pod, sb, np := decodeAll(t, out)
	if pod != nil || sb == nil || np == nil {
		t.Fatalf("want a Sandbox and a NetworkPolicy:\n%s", out)
	}
	if sb.APIVersion != "agents.x-k8s.io/v1alpha1" || sb.Kind != "Sandbox" || sb.Spec.Replicas == nil || *sb.Spec.Replicas != 1 {
		t.Errorf("sandbox: %s %s replicas %v", sb.APIVersion, sb.Kind, sb.Spec.Replicas)
	}
	tmpl := sb.Spec.PodTemplate
	if tmpl.Metadata.Labels[LabelSession] != testSession || np.Spec.PodSelector.MatchLabels[LabelSession] != testSession {
		t.Errorf("the policy does not select the sandbox's pod: %v / %v", tmpl.Metadata.Labels, np.Spec.PodSelector)
	}
	if c := tmpl.Spec.Containers[0]; !*c.SecurityContext.ReadOnlyRootFilesystem || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Errorf("sandbox container not hardened: %+v", c.SecurityContext)
	}
	if tmpl.Spec.Volumes[2].PersistentVolumeClaim.ClaimName != DefaultClaim {
		t.Errorf("default workspace claim: %+v", tmpl.Spec.Volumes)
	}
	if !strings.Contains(out, "egress gateway is not exported") {
		t.Errorf("a gateway profile's export does not say the gateway is left out:\n%s", out)
	}
}

func TestExportRefusalsAndNotes(t *testing.T) {
	pl := testPlan("bridge")
	pl.Decision.Mounts = append(pl.Decision.Mounts, policy.MountDecision{Role: policy.RoleMount, Declared: "/home/u/.cache/go", Target: "/go", Allowed: true})
	if _, err := Objects(pl, Options{}); err == nil || !strings.Contains(err.Error(), "/home/u/.cache/go → /go") || !strings.Contains(err.Error(), "spec.mounts") {
		t.Errorf("a host path mount: %v", err)
	}
	pl = testPlan("bridge")
	pl.Container.User = "0:0"
	out := export(t, pl, Options{})
	pod, _, np := decodeAll(t, out)
	if np != nil || !strings.Contains(out, "the pod has the cluster's network") {
		t.Errorf("bridge: a policy %v, or no note:\n%s", np, out)
	}
	if *pod.Spec.SecurityContext.RunAsUser != 1000 || !strings.Contains(out, "runs as uid 1000") {
		t.Errorf("root's plan: runAsUser %d", *pod.Spec.SecurityContext.RunAsUser)
	}
	for _, bad := range []string{"app", "pvc:", "pvc:App", "pvc:-x", "hostPath:/x", "pvc:" + strings.Repeat("a", 64)} {
		if _, err := ClaimName(bad); err == nil || !strings.Contains(err.Error(), "pvc:NAME") {
			t.Errorf("--kube-workspace %q: %v", bad, err)
		}
	}
	if _, err := Objects(testPlan("none"), Options{Kind: "deployment"}); err == nil {
		t.Error("--kube-kind deployment accepted")
	}
}

func TestDecodeIsStrictAndNamesWhere(t *testing.T) {
	good := export(t, testPlan("none"), Options{})
	if m, err := Decode("pod.yaml", []byte(good)); err != nil || m.Pod == nil || len(m.Policies) != 1 {
		t.Fatalf("the export itself: %v", err)
	}
	misspelt := strings.Replace(good, "readOnlyRootFilesystem", "readOnlyRootFileSystem", 1)
	line := strings.Count(misspelt[:strings.Index(misspelt, "readOnlyRootFileSystem")], "\n") + 1
	cases := []struct{ name, manifest, want string }{
		{"a misspelt field", misspelt, fmt.Sprintf(`pod.yaml:%d: document 1 (v1 Pod): unknown field "spec.containers[0].securityContext.readOnlyRootFileSystem"`, line)},
		{"a repeated field", strings.Replace(good, "  hostname: sourceos-agent\n", "  hostname: sourceos-agent\n  hostname: other\n", 1), `mapping key "hostname" already defined at line`},
		{"a trailing separator", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n---\n", "no Pod in the manifest"},
		{"a second pod", good + "\n---\n" + good[strings.Index(good, "apiVersion: v1"):strings.Index(good, "---")], "document 3 is a second Pod"},
		{"a sandbox", export(t, testPlan("none"), Options{Kind: KindSandbox}), "needs its controller in a cluster; export with --kube-kind pod"},
		{"a deployment", "apiVersion: apps/v1\nkind: Deployment\n", "pod.yaml:1: document 1 is a apps/v1 Deployment, not a Pod or a NetworkPolicy"},
		{"no pod", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n", "no Pod in the manifest"},
		{"not YAML", "a: [", "not YAML"},
		{"a list", "- 1\n", "document 1 is not an object"},
	}
	for _, tt := range cases {
		_, err := Decode("pod.yaml", []byte(tt.manifest))
		var in *InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an input error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestUnenforcedNamesWhatAServerMayIgnore(t *testing.T) {
	m, err := Decode("pod.yaml", []byte(export(t, testPlan("none"), Options{})))
	if err != nil {
		t.Fatal(err)
	}
	if d := Unenforced(m.Pod); len(d) != 0 {
		t.Fatalf("the export itself: %v", d)
	}
	yes := true
	unmasked := corev1.UnmaskedProcMount
	edits := map[string]func(p *corev1.Pod){
		"hostNetwork: true": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"hostPID: true":     func(p *corev1.Pod) { p.Spec.HostPID = true },
		"hostIPC: true":     func(p *corev1.Pod) { p.Spec.HostIPC = true },
		"hostUsers: true":   func(p *corev1.Pod) { p.Spec.HostUsers = &yes },
		"shareProcessNamespace: true": func(p *corev1.Pod) {
			p.Spec.ShareProcessNamespace = &yes
		},
		"the pod's seccompProfile Unconfined": func(p *corev1.Pod) {
			p.Spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		},
		"agent's seccompProfile Localhost": func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost}
		},
		"agent's appArmorProfile Unconfined": func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		},
		"agent's procMount Unmasked": func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.ProcMount = &unmasked },
	}
	for want, edit := range edits {
		p := m.Pod.DeepCopy()
		edit(p)
		if d := Unenforced(p); len(d) != 1 || !strings.Contains(d[0], want) {
			t.Errorf("%s: %v", want, d)
		}
	}
}
