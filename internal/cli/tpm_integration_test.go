//go:build linux

package cli

import (
	"os"
	"path/filepath"
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
	var bundles []string
	for i := 0; i < 4; i++ {
		code, out := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
		if code != 0 {
			t.Fatalf("session %d with the TPM-held key: exit %d\n%s", i, code, out)
		}
		if strings.Contains(out, "Created the evidence signing key") {
			t.Fatalf("session %d made a file key beside the TPM one:\n%s", i, out)
		}
		bundles = append(bundles, bundleFrom(t, out))
		verifyBundle(t, w, bundles[i]) // evidence verify --strict, and stock cosign
	}
	if code, out := verifyLog(t, w); code != 0 || !strings.Contains(out, "4 entries under the latest signed checkpoint") {
		t.Errorf("the log signed in the TPM: exit %d\n%s", code, out)
	}
	if code, out := cli("am", "evidence", "key", "create", "--tpm", "--device", dev); code != 2 || !strings.Contains(out, "already has an evidence key") {
		t.Errorf("a second key: exit %d\n%s", code, out)
	}
	first := bundles[0]

	// Rotation away from the TPM to a file key, and back into the TPM under a new key: each
	// is recorded in the log, the first session's bundle still verifies with the host's
	// current key (through the log) and with stock cosign and its kept public key.
	keys := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys")
	for i, args := range [][]string{{"am", "evidence", "key", "rotate"}, {"am", "evidence", "key", "rotate", "--tpm", "--device", dev}} {
		code, out := cli(args...)
		if code != 0 || !strings.Contains(out, "rotation recorded at entry") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		_, isFile := os.Stat(filepath.Join(keys, "evidence.key"))
		_, isTPM := os.Stat(filepath.Join(keys, "evidence.tpm"))
		if (i == 0) != (isFile == nil) || (i == 1) != (isTPM == nil) {
			t.Fatalf("after %v the host holds a file key: %v, a TPM key: %v", args, isFile == nil, isTPM == nil)
		}
		code, out = cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
		if code != 0 {
			t.Fatalf("a session after %v: exit %d\n%s", args, code, out)
		}
		verifyBundle(t, w, bundleFrom(t, out))
		// The first bundle, with the host's current key: through the log's rotations.
		if code, out := cli("am", "evidence", "verify", first, "--strict"); code != 0 || !strings.Contains(out, "rotations tie to") {
			t.Fatalf("the first bundle after %v: exit %d\n%s", args, code, out)
		}
	}
	previous, _ := filepath.Glob(filepath.Join(keys, "previous", "*.pub"))
	if len(previous) != 2 {
		t.Fatalf("keys/previous after two rotations: %v", previous)
	}
	matched, cosignMatched := 0, 0
	for _, p := range previous {
		if code, _ := cli("am", "evidence", "verify", first, "--key", p); code == 0 {
			matched++
		}
		if ran, _, err := cosignAccepts(t, first, p); !ran {
			cosignMatched = 1
		} else if err == nil {
			cosignMatched++
		}
	}
	if matched != 2 || cosignMatched != 1 {
		t.Errorf("the first bundle verifies with %d of the two earlier keys through the log (want both) and with %d by cosign alone (want the one that signed it)", matched, cosignMatched)
	}
	if code, out := verifyLog(t, w); code != 0 || !strings.Contains(out, "8 entries") || !strings.Contains(out, "signed by 3 keys in turn") {
		t.Errorf("the rotated log: exit %d\n%s", code, out)
	}
}
