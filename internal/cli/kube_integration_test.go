package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sourceos/sourceosctl/internal/kube"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationAKubeExportRunsGovernedUnderKubePlay exports a session as a Pod, plays it on
// the real service with `kube play` (Podman's own kube play, then the post-create comparison
// and the checks from inside), and looks at the running container from inside itself. Then
// it plays the export edited by hand in each way that widens a pod, and on a server whose
// containers.conf widens every container: each is refused (exit 3, the difference named)
// and nothing is left behind.
func TestIntegrationAKubeExportRunsGovernedUnderKubePlay(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	manifest, m, claim := exportWithClaim(t, e, w, "kube-ws")
	pod := m.Pod
	uid := *pod.Spec.SecurityContext.RunAsUser
	t.Cleanup(func() { _, _ = e.Podman("pod", "rm", "-f", pod.Name) })
	if _, err := e.Podman("run", "--rm", "-v", claim+":/w", podmantest.Image, "sh", "-c",
		fmt.Sprintf("echo from-the-claim > /w/README && chown -R %d:%d /w", uid, uid)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "pod.yaml")
	writeFile(t, file, manifest)

	// Refused before anything is created: the claim must exist on the service.
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	writeFile(t, missing, strings.ReplaceAll(manifest, "claimName: "+claim, "claimName: no-such-claim"))
	f2, _, errOut2 := sessionFactory(t, e, w, nil)
	if code := run(t, f2, "--profile", w.profile, "am", "kube", "play", missing); code != ExitMissing || !strings.Contains(errOut2.String(), "podman volume create no-such-claim") {
		t.Errorf("a missing claim: exit %d\n%s", code, errOut2)
	}

	f, out, errOut := sessionFactory(t, e, w, nil)
	if code := run(t, f, "--profile", w.profile, "am", "kube", "play", file, "-o", "json"); code != 0 {
		t.Fatalf("kube play of the export: exit %d\n%s", code, errOut)
	}
	var played kube.Played
	if err := json.Unmarshal(out.Bytes(), &played); err != nil || !played.Started || played.Pod != pod.Name || len(played.Containers) != 1 || len(played.Volumes) != 2 {
		t.Fatalf("played: %+v (%v)\n%s", played, err, out)
	}
	t.Cleanup(func() { _, _ = e.Podman(append([]string{"volume", "rm", "-f"}, played.Volumes...)...) })

	// From inside, with the container's own tools.
	script := `grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/1/status
echo "uid=$(id -u) gid=$(id -g)"
touch /root-probe 2>/dev/null && echo root=rw || echo root=ro
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
echo "readme=$(cat /workspace/README)"
touch /workspace/x && echo workspace=rw
touch /tmp/x "$HOME/x" && echo tmpfs=rw
grep -E ' /tmp | /home/agent ' /proc/1/mountinfo | awk '{print "fs=" $5 "=" $(NF-2)}'`
	inside, err := e.Podman("exec", played.Containers[0].Name, "sh", "-c", script)
	if err != nil {
		t.Fatalf("exec: %v\n%s", err, inside)
	}
	for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "Seccomp:\t2", fmt.Sprintf("uid=%d gid=%d", uid, uid), "root=ro", "net=lo \n", "readme=from-the-claim",
		"workspace=rw", "tmpfs=rw", "fs=/tmp=tmpfs", "fs=/home/agent=tmpfs"} {
		if !strings.Contains(inside+"\n", want) {
			t.Errorf("inside: no %q in\n%s", want, inside)
		}
	}
	if _, err := e.Podman("pod", "rm", "-f", pod.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Podman(append([]string{"volume", "rm"}, played.Volumes...)...); err != nil {
		t.Fatal(err)
	}

	// Hand-edited manifests: each widening is refused by what the server made of it (or, for
	// what a Podman server ignores, by the manifest itself), and nothing stays.
	yes, no, zero := true, false, int64(0)
	edits := []struct {
		name, want string
		edit       func(p *corev1.Pod)
	}{
		{"a capability added", "effective capabilities CAP_NET_RAW (want none)", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_RAW"}
		}},
		{"SYS_ADMIN added", "capabilities added: CAP_SYS_ADMIN", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
		}},
		{"no capability dropped", "capabilities not dropped: CHOWN", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.Capabilities = nil
		}},
		{"privileged", "container is privileged", func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext.Privileged = &yes }},
		{"privilege escalation", "no-new-privileges is false", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
		}},
		{"a writable root", "read-only root is false", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &no
		}},
		{"root", "runs as root", func(p *corev1.Pod) {
			p.Spec.SecurityContext.RunAsUser, p.Spec.SecurityContext.RunAsNonRoot = &zero, &no
			p.Spec.Containers[0].SecurityContext.RunAsUser, p.Spec.Containers[0].SecurityContext.RunAsNonRoot = &zero, &no
		}},
		{"a host path", "bind mounts are [/etc:/hostetc:rw]", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "etc", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}})
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "etc", MountPath: "/hostetc"})
		}},
		{"no limits", "no memory or CPU limit", func(p *corev1.Pod) { p.Spec.Containers[0].Resources = corev1.ResourceRequirements{} }},
		{"a runtime annotation", "the manifest sets the annotation run.oci.keep_original_groups", func(p *corev1.Pod) {
			p.Annotations["run.oci.keep_original_groups"] = "1"
		}},
		{"seccomp unconfined by annotation", "the manifest sets the annotation seccomp.security.alpha.kubernetes.io/pod", func(p *corev1.Pod) {
			p.Annotations["seccomp.security.alpha.kubernetes.io/pod"] = "unconfined"
		}},
		{"host PID", "the manifest sets hostPID: true; nothing was created", func(p *corev1.Pod) { p.Spec.HostPID = true }},
		{"a tool's login volume as the workspace", "names a volume of sourceosctl's own", func(p *corev1.Pod) {
			for _, v := range p.Spec.Volumes {
				if v.PersistentVolumeClaim != nil {
					v.PersistentVolumeClaim.ClaimName = "sosctl-state-it-codex"
				}
			}
		}},
		{"host network", "the manifest sets hostNetwork: true", func(p *corev1.Pod) { p.Spec.HostNetwork = true }},
		{"seccomp unconfined", "seccompProfile Unconfined", func(p *corev1.Pod) {
			p.Spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}},
	}
	for _, tt := range edits {
		t.Run("edited/"+tt.name, func(t *testing.T) {
			p := pod.DeepCopy()
			tt.edit(p)
			weak := filepath.Join(t.TempDir(), "weak.yaml")
			writeFile(t, weak, string(mustYAML(t, p)))
			f, out, errOut := sessionFactory(t, e, w, nil)
			code := run(t, f, "--profile", w.profile, "am", "kube", "play", weak)
			if code != ExitRefused || !strings.Contains(errOut.String(), tt.want) || !strings.Contains(errOut.String(), "is not governed") {
				t.Fatalf("exit %d, want %d naming %q\nstdout:\n%s\nstderr:\n%s", code, ExitRefused, tt.want, out, errOut)
			}
			assertNoPodLeft(t, e, p)
		})
	}

	// A server whose own configuration widens every container it creates: seen by the
	// comparison (a device), or only from inside (a host file bound in).
	for _, tt := range []struct{ conf, want string }{
		{`devices = ["/dev/fuse"]`, "device /dev/fuse:/dev/fuse was not planned"},
		{`tz = "local"`, "agent (inside): mount /etc/localtime"},
	} {
		t.Run("server/"+tt.conf, func(t *testing.T) {
			weak := e.Weakened(t, tt.conf)
			f, out, errOut := sessionFactory(t, weak, w, nil)
			code := run(t, f, "--profile", w.profile, "am", "kube", "play", file)
			if code != ExitRefused || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, want %d naming %q\nstdout:\n%s\nstderr:\n%s", code, ExitRefused, tt.want, out, errOut)
			}
			assertNoPodLeft(t, e, pod)
		})
	}
}

// exportWithClaim exports w's session as a pod whose workspace is a new claim (a volume of
// e, removed when the test ends) and decodes the export strictly.
func exportWithClaim(tb testing.TB, e *podmantest.Env, w *workspace, prefix string) (string, *kube.Manifest, string) {
	tb.Helper()
	f, out, errOut := sessionFactory(tb, e, w, nil)
	claim := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if code := run(tb, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "kube",
		"--kube-workspace", "pvc:"+claim, "--", "sleep", "600"); code != 0 {
		tb.Fatalf("export: exit %d\n%s", code, errOut)
	}
	m, err := kube.Decode("export", out.Bytes())
	if err != nil {
		tb.Fatalf("the export does not decode strictly: %v\n%s", err, out)
	}
	tb.Cleanup(func() { _, _ = e.Podman("volume", "rm", "-f", claim) })
	if _, err := e.Podman("volume", "create", claim); err != nil {
		tb.Fatal(err)
	}
	return out.String(), m, claim
}

func mustYAML(t *testing.T, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertNoPodLeft: a refused pod is removed with the volumes made for its emptyDirs.
func assertNoPodLeft(t *testing.T, e *podmantest.Env, p *corev1.Pod) {
	t.Helper()
	if _, err := e.Podman("pod", "inspect", p.Name); err == nil {
		t.Errorf("pod %s was left behind", p.Name)
	}
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			if _, err := e.Podman("volume", "inspect", v.Name); err == nil {
				t.Errorf("volume %s was left behind", v.Name)
			}
		}
	}
}
