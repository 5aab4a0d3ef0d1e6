package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkKubePlay times `kube play --no-start` of an exported pod — strict decoding, the
// manifest's checks, the emptyDirs made as tmpfs volumes, Podman's kube play and the
// comparison of what it made — against Podman's own `podman kube play --network none
// --start=false` of the same file, in alternating pairs; each side then removes its pod and
// volumes the same way.
func BenchmarkKubePlay(b *testing.B) {
	e := podmantest.Need(b)
	w := newWorkspace(b, e, "")
	manifest, m, _ := exportWithClaim(b, e, w, "kube-bench")
	file := filepath.Join(b.TempDir(), "pod.yaml")
	writeFile(b, file, manifest)
	cleanUp := func() error {
		if out, err := e.Podman("pod", "rm", "-f", m.Pod.Name); err != nil {
			return fmt.Errorf("pod rm: %v: %s", err, out)
		}
		for _, v := range m.Pod.Spec.Volumes {
			if v.EmptyDir != nil {
				// Podman's own kube play removes the volumes it made with the pod.
				if out, err := e.Podman("volume", "rm", v.Name); err != nil && !strings.Contains(out+err.Error(), "no such volume") {
					return fmt.Errorf("volume rm: %v: %s", err, out)
				}
			}
		}
		return nil
	}
	tool := func() error {
		cmd := cliProcess(b, e, w, "--profile", w.profile, "am", "kube", "play", "--no-start", file)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w:\n%s", err, out)
		}
		return cleanUp()
	}
	raw := func() error {
		if out, err := e.Podman("kube", "play", "--network", "none", "--start=false", file); err != nil {
			return fmt.Errorf("podman kube play: %v: %s", err, out)
		}
		return cleanUp()
	}
	abCompare(b, tool, raw, "ms-podman-kube-play")
}
