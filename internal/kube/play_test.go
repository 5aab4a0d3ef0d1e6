package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/podman"
)

// fakeEngine is a Podman service that makes exactly what the manifest asks (Applied), with
// the volumes it holds; calls are recorded.
type fakeEngine struct {
	procFiles
	volumes map[string]map[string]string // name → options
	calls   []string
	made    container.Observed
	playErr error
}

func (f *fakeEngine) PlayKube(context.Context, []byte) ([]podman.PlayedPod, error) {
	f.calls = append(f.calls, "play")
	if f.playErr != nil {
		return nil, f.playErr
	}
	return []podman.PlayedPod{{Name: "p", Infra: "infra", Containers: []podman.PodContainer{{ID: "c1", Name: "p-agent"}}}}, nil
}
func (f *fakeEngine) Inspect(_ context.Context, id string) (container.Observed, []byte, error) {
	if id == "infra" {
		return container.Observed{Network: "none", Namespaces: map[string]string{"ipc": "shareable"}}, nil, nil
	}
	return f.made, nil, nil
}
func (f *fakeEngine) Image(context.Context, string) (container.Image, bool, error) {
	return container.Image{Env: []string{"PATH=/bin"}}, true, nil
}
func (f *fakeEngine) StartPod(context.Context, string) error {
	f.calls = append(f.calls, "start")
	return nil
}
func (f *fakeEngine) RemovePod(context.Context, string) error {
	f.calls = append(f.calls, "remove")
	return nil
}
func (f *fakeEngine) RemoveVolume(_ context.Context, name string) error {
	delete(f.volumes, name)
	return nil
}
func (f *fakeEngine) VolumeExists(_ context.Context, name string) (bool, error) {
	_, ok := f.volumes[name]
	return ok, nil
}
func (f *fakeEngine) VolumeSource(_ context.Context, name string) (string, map[string]string, error) {
	return "local", f.volumes[name], nil
}
func (f *fakeEngine) CreateTmpfsVolume(_ context.Context, name string, _ int64, _, _ int64, _ map[string]string) error {
	f.volumes[name] = map[string]string{"type": "tmpfs"}
	return nil
}

// madeOf is what a server that applied the pod's container as asked reports.
func madeOf(pod *corev1.Pod) container.Observed {
	c := pod.Spec.Containers[0]
	o := container.Observed{CapDrop: []string{"ALL"}, ReadOnlyRoot: true, NoNewPrivileges: true, User: "1000:1000",
		Network: "container:infra", Namespaces: map[string]string{"pid": "private", "ipc": "container:infra", "uts": "container:infra"},
		Limits: container.Limits{CPUs: 1.5, MemoryBytes: 4 << 30, Pids: 2048}, Hostname: pod.Spec.Hostname, Env: []string{"PATH=/bin", "container=podman"},
		Annotations: map[string]string{"io.podman.annotations.init": "FALSE"}}
	for _, e := range c.Env {
		o.Env = append(o.Env, e.Name+"="+e.Value)
	}
	for _, vm := range c.VolumeMounts {
		name, _, _ := podmanVolume(pod, vm.Name)
		o.Volumes = append(o.Volumes, container.Volume{Name: name, Target: vm.MountPath})
	}
	return o
}

func playFixture(t *testing.T) (*Manifest, *fakeEngine) {
	t.Helper()
	pl := testPlan("none")
	pl.Container.Secrets = nil
	m, err := Decode("pod.yaml", []byte(export(t, pl, Options{Workspace: "pvc:app"})))
	if err != nil {
		t.Fatal(err)
	}
	m.Pod.Name = "p"
	f := &fakeEngine{procFiles: governedProc(), volumes: map[string]map[string]string{"app": {}}}
	f.procFiles["cat /proc/1/environ"] = strings.Replace(f.procFiles["cat /proc/1/environ"], "OPENAI_API_KEY=x\x00", "", 1)
	f.made = madeOf(m.Pod)
	return m, f
}

func TestKubePlayStartsWhatIsGovernedAndRefusesTheRestBeforeCreatingIt(t *testing.T) {
	m, f := playFixture(t)
	played, err := Play(context.Background(), f, m, true)
	if err != nil || !played.Started || strings.Join(f.calls, ",") != "play,start" || len(played.Volumes) != 2 {
		t.Fatalf("the export: %v %+v calls %v", err, played, f.calls)
	}

	// Podman 5 mounts a memory-backed emptyDir as a tmpfs: as governed as 4.3's volume.
	m, f = playFixture(t)
	f.made.Volumes = f.made.Volumes[2:]
	f.made.Tmpfs = []string{"/tmp", "/home/agent"}
	if _, err := Play(context.Background(), f, m, false); err != nil {
		t.Errorf("emptyDirs as tmpfs mounts: %v", err)
	}

	yes := true
	edits := map[string]func(m *Manifest, f *fakeEngine){
		"names a volume of sourceosctl's own": func(m *Manifest, f *fakeEngine) {
			m.Pod.Spec.Volumes[2].PersistentVolumeClaim.ClaimName = "sosctl-state-default-codex"
			f.volumes["sosctl-state-default-codex"] = nil
		},
		"a host path or device": func(m *Manifest, f *fakeEngine) {
			f.volumes["app"] = map[string]string{"type": "none", "o": "bind", "device": "/home/u"}
		},
		"a second PersistentVolumeClaim": func(m *Manifest, f *fakeEngine) {
			m.Pod.Spec.Volumes = append(m.Pod.Spec.Volumes, corev1.Volume{Name: "other", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "app"}}})
		},
		"allows traffic": func(m *Manifest, f *fakeEngine) {
			m.Policies[0].Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		},
		"the annotation io.podman.annotations.pids-limit/agent": func(m *Manifest, f *fakeEngine) {
			m.Pod.Annotations["io.podman.annotations.pids-limit/agent"] = "0"
		},
		"gives agent the Secret other": func(m *Manifest, f *fakeEngine) {
			m.Pod.Spec.Containers[0].Env = append(m.Pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "X",
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "other"}, Key: "x"}}})
		},
		"automountServiceAccountToken: false": func(m *Manifest, f *fakeEngine) { m.Pod.Spec.AutomountServiceAccountToken = &yes },
		"runtimeClassName: runc":              func(m *Manifest, f *fakeEngine) { r := "runc"; m.Pod.Spec.RuntimeClassName = &r },
		"appArmorProfile Localhost": func(m *Manifest, f *fakeEngine) {
			m.Pod.Spec.Containers[0].SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost}
		},
	}
	for want, edit := range edits {
		m, f := playFixture(t)
		edit(m, f)
		_, err := Play(context.Background(), f, m, true)
		var weak *WeakenedError
		if !errors.As(err, &weak) || !weak.NotCreated || !strings.Contains(err.Error(), want) || len(f.calls) != 0 {
			t.Errorf("%s: %v, calls %v (want refused before anything is created)", want, err, f.calls)
		}
	}

	// What the server made otherwise is refused after creation, and the pod removed.
	m, f = playFixture(t)
	f.made.CapAdd = []string{"CAP_SYS_ADMIN"}
	if _, err := Play(context.Background(), f, m, true); err == nil || !strings.Contains(err.Error(), "capabilities added: CAP_SYS_ADMIN") || strings.Join(f.calls, ",") != "play,remove" {
		t.Errorf("an added capability: %v, calls %v", err, f.calls)
	}
	if _, ok := f.volumes["tmpfs-0-f1451e3a8721"]; ok {
		t.Error("the refused pod's emptyDir volume was left")
	}
	// A kube play that fails leaves none of the volumes made for it.
	m, f = playFixture(t)
	f.playErr = errors.New("image not known")
	if _, err := Play(context.Background(), f, m, true); err == nil || len(f.volumes) != 1 {
		t.Errorf("a failed kube play: %v, volumes left %v", err, f.volumes)
	}
	m, f = playFixture(t)
	f.procFiles["cat /proc/1/status"] = strings.Replace(f.procFiles["cat /proc/1/status"], "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1)
	if _, err := Play(context.Background(), f, m, true); err == nil || !strings.Contains(err.Error(), "agent (inside): no-new-privileges is 0") || strings.Join(f.calls, ",") != "play,start,remove" {
		t.Errorf("seen from inside: %v, calls %v", err, f.calls)
	}
}
