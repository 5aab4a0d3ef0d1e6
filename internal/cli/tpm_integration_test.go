//go:build linux

package cli

import (
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
	"github.com/sourceos/sourceosctl/internal/tpmtest"
)

// TestIntegrationTPMHeldKey: the evidence key made in a real TPM 2.0 (swtpm) signs real
// sessions' bundles and the session log's checkpoints; `evidence verify` and stock cosign
// verify them with the exported public key; four sessions in a row show the TPM's few key
// slots are released; a second key is refused.
func TestIntegrationTPMHeldKey(t *testing.T) {
	e := podmantest.Need(t)
	dev := tpmtest.Start(t)
	w := newWorkspace(t, e, "")
	gitRepo(t, w)
	cli := func(args ...string) (int, string) {
		t.Helper()
		f, out, errOut := sessionFactory(t, e, w, nil)
		code := run(t, f, args...)
		return code, out.String() + errOut.String()
	}
	if code, out := cli("am", "evidence", "key", "create", "--tpm", "--device", dev); code != 0 || !strings.Contains(out, "evidence key made in the TPM") {
		t.Fatalf("key create --tpm: exit %d\n%s", code, out)
	}
	if code, out := cli("am", "evidence", "key", "show"); code != 0 || !strings.Contains(out, "TPM-held key evidence-") {
		t.Errorf("key show: exit %d\n%s", code, out)
	}
	if _, out := cli("am", "doctor"); !strings.Contains(out, "held by the TPM "+dev) {
		t.Errorf("doctor does not say the TPM holds the key:\n%s", out)
	}
	for i := 0; i < 4; i++ {
		code, out := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
		if code != 0 {
			t.Fatalf("session %d with the TPM-held key: exit %d\n%s", i, code, out)
		}
		if strings.Contains(out, "Created the evidence signing key") {
			t.Fatalf("session %d made a file key beside the TPM one:\n%s", i, out)
		}
		verifyBundle(t, w, bundleFrom(t, out)) // evidence verify --strict, and stock cosign
	}
	if code, out := verifyLog(t, w); code != 0 || !strings.Contains(out, "4 entries under the latest signed checkpoint") {
		t.Errorf("the log signed in the TPM: exit %d\n%s", code, out)
	}
	if code, out := cli("am", "evidence", "key", "create", "--tpm", "--device", dev); code != 2 || !strings.Contains(out, "already has an evidence key") {
		t.Errorf("a second key: exit %d\n%s", code, out)
	}
}
