package cli

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkImageFetch compares, as whole processes in alternating runs (medians of 7 pairs):
//
//   - update-unchanged: `image update` with an unchanged registry source (one HEAD request)
//     against raw `podman pull` of the same, already present, reference;
//   - pull-archive: `image pull` of a local `podman save` archive (SHA-256 check, load, tag,
//     manifest) against raw `podman load -i` of the same archive.
func BenchmarkImageFetch(b *testing.B) {
	env := podmantest.Need(b)
	w := newWorkspace(b, env, "")
	ts := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer ts.Close()
	remote := strings.TrimPrefix(ts.URL, "http://") + "/sosctl/agent:1"
	if out, err := env.Podman("push", "--tls-verify=false", podmantest.Image, remote); err != nil {
		b.Fatalf("push: %v %s", err, out)
	}
	archive, sum := saveArchive(b, env, podmantest.Image)
	defer removeImage(env, fetchedRef)
	cli := func(args ...string) func() error {
		return func() error {
			cmd := cliProcess(b, env, w, append([]string{"--profile", w.profile, "am", "image"}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	raw := func(args ...string) func() error {
		return func() error {
			if out, err := env.Podman(args...); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	cases := []struct {
		name    string
		sources string
		tool    func() error
		raw     func() error
	}{
		{"update-unchanged", fmt.Sprintf("      - registry: %s\n        tlsVerify: false\n", remote), cli("update"), raw("pull", "-q", "--tls-verify=false", remote)},
		{"pull-archive", fmt.Sprintf("      - archive: %s\n        sha256: %q\n", archive, sum), cli("pull"), raw("load", "-q", "-i", archive)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			imageProfile(b, w, fetchedRef, c.sources)
			abCompare(b, c.tool, c.raw, "ms-podman")
		})
	}
}
