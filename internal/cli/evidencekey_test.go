package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/profiles"
)

// TestEvidenceKeyRotate rotates a host's file key with sessions already logged in its own
// evidence directory, a profile's and one named with --log: every log records it, earlier
// bundles still verify with the new public key (and with the old one), the old private key
// is gone, a rotation that cannot finish changes nothing and resumes.
func TestEvidenceKeyRotate(t *testing.T) {
	f, _, _ := testFactory(t)
	dirs, err := f.Dirs()
	if err != nil {
		t.Fatal(err)
	}
	am := func(args ...string) (int, string) {
		t.Helper()
		f.IO.Out.(*bytes.Buffer).Reset()
		f.IO.ErrOut.(*bytes.Buffer).Reset()
		code := run(t, f, append([]string{"am", "evidence"}, args...)...)
		return code, f.IO.Out.(*bytes.Buffer).String() + f.IO.ErrOut.(*bytes.Buffer).String()
	}
	if code, out := am("key", "rotate"); code != 2 || !strings.Contains(out, "no evidence key yet") {
		t.Fatalf("a host without a key: exit %d\n%s", code, out)
	}
	priv, pub := dirs.SigningKeyPaths()
	oldKey, err := evidence.LoadOrCreateKey(priv, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldPriv, _ := os.ReadFile(priv)
	base := t.TempDir()
	profileDir, namedDir, emptyDir := filepath.Join(base, "profile-ev"), filepath.Join(base, "named-ev"), filepath.Join(base, "empty-ev")
	must(t, os.MkdirAll(emptyDir, 0o700))
	session := func(dir string, i int, key *evidence.Key) string {
		t.Helper()
		b := writeUnlogged(t, dir, fmt.Sprintf("20261202t10000%dz-00000000000%d", i, i), key)
		if _, err := evidencelog.Append(b, key.Signer); err != nil {
			t.Fatal(err)
		}
		return b
	}
	hostBundle := session(dirs.EvidenceDir(), 0, oldKey)
	session(dirs.EvidenceDir(), 1, oldKey)
	session(profileDir, 2, oldKey)
	session(namedDir, 3, oldKey)
	writeProfileWithEvidence(t, filepath.Join(dirs.ProfilesDir(), "team.yaml"), profileDir)
	must(t, os.WriteFile(filepath.Join(dirs.ProfilesDir(), "broken.yaml"), []byte("kind: nonsense\n"), 0o644))

	if code, out := am("key", "rotate", "--device", "/dev/tpmrm0"); code != 2 || !strings.Contains(out, "--device names the TPM for --tpm") {
		t.Fatalf("--device without --tpm: exit %d\n%s", code, out)
	}
	// A log signed by another key cannot record the rotation: nothing is replaced.
	strangerDir := filepath.Join(base, "stranger-ev")
	stranger, err := evidence.LoadOrCreateKey(filepath.Join(base, "s.key"), filepath.Join(base, "s.pub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	session(strangerDir, 4, stranger)
	code, out := am("key", "rotate", "--log", namedDir, "--log", strangerDir)
	if code == 0 || !strings.Contains(out, strangerDir) || !strings.Contains(out, "the key was not changed") || !strings.Contains(out, "run `evidence key rotate` again") {
		t.Fatalf("a rotation that cannot finish: exit %d\n%s", code, out)
	}
	if now, _ := os.ReadFile(priv); !bytes.Equal(now, oldPriv) {
		t.Fatal("a rotation that did not finish replaced the key")
	}
	pendingPub, err := os.ReadFile(pub + ".new")
	if err != nil {
		t.Fatalf("the new key must wait for the rotation to be run again: %v", err)
	}

	lateDir, unloggedDir := filepath.Join(base, "late-ev"), filepath.Join(base, "unlogged-ev")
	session(lateDir, 6, oldKey)
	writeUnlogged(t, unloggedDir, "20261202t110000z-000000000009", oldKey)
	code, out = am("key", "rotate", "--log", namedDir, "--log", emptyDir, "--log", lateDir, "--log", unloggedDir)
	if code != 0 {
		t.Fatalf("rotate: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"! profile " + filepath.Join(dirs.ProfilesDir(), "broken.yaml") + " does not load",
		dirs.EvidenceDir() + ": the rotation was already recorded", // by the run that stopped
		profileDir + ": the rotation was already recorded",
		namedDir + ": the rotation was already recorded",
		emptyDir + ": nothing to record (no bundles and no session log)",
		lateDir + ": rotation recorded at entry 1",
		unloggedDir + ": log started with its 1 earlier bundles; rotation recorded at entry 1",
		"old public key kept: " + filepath.Join(dirs.PreviousKeysDir(), "sha256-"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate's report lacks %q:\n%s", want, out)
		}
	}
	if now, _ := os.ReadFile(pub); !bytes.Equal(now, pendingPub) {
		t.Error("the rotation resumed with another key than the one it made first")
	}
	if now, _ := os.ReadFile(priv); bytes.Equal(now, oldPriv) || strings.Contains(string(now), string(oldPriv)) {
		t.Error("the old private key is still there")
	}
	for _, p := range []string{priv + ".new", pub + ".new"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	previous, _ := filepath.Glob(filepath.Join(dirs.PreviousKeysDir(), "*.pub"))
	if len(previous) != 1 {
		t.Fatalf("keys/previous: %v", previous)
	}

	// The earlier bundle verifies with the host's new key (through the log) and the old one.
	if code, out := am("verify", hostBundle, "--strict"); code != 0 || !strings.Contains(out, "which the session log's rotations tie to "+pub) {
		t.Errorf("an earlier bundle with the new key: exit %d\n%s", code, out)
	}
	if code, out := am("verify", hostBundle, "--key", previous[0], "--strict"); code != 0 {
		t.Errorf("an earlier bundle with the old key: exit %d\n%s", code, out)
	}
	newKey, err := evidence.LoadOrCreateKey(priv, pub, nil)
	if err != nil || newKey.Created {
		t.Fatalf("the new key: %v", err)
	}
	later := session(dirs.EvidenceDir(), 5, newKey)
	if code, out := am("verify", later, "--key", previous[0], "--strict"); code != 0 || !strings.Contains(out, "rotations tie to "+previous[0]) {
		t.Errorf("a later bundle with the old key: exit %d\n%s", code, out)
	}
	if code, out := am("log", "verify"); code != 0 || !strings.Contains(out, "signed by 2 keys in turn") {
		t.Errorf("log verify: exit %d\n%s", code, out)
	}
	if code, out := am("report"); code != 0 || !strings.Contains(out, "3 sessions, 3 verified, 0 failed") {
		t.Errorf("report: exit %d\n%s", code, out)
	}
	if code, out := am("key", "show"); code != 0 || !strings.Contains(out, previous[0]) {
		t.Errorf("key show lists the earlier keys: exit %d\n%s", code, out)
	}
	// The retired key can no longer log a session there.
	if _, err := evidencelog.Append(writeUnlogged(t, dirs.EvidenceDir(), "20261202t110000z-000000000009", oldKey), oldKey.Signer); err == nil {
		t.Error("the retired key appended to the rotated log")
	}
}

// writeUnlogged signs a bundle for the session id into dir, not logged.
func writeUnlogged(t *testing.T, dir, id string, key *evidence.Key) string {
	t.Helper()
	b, err := evidence.Write(dir, id, evidence.SamplePredicate(id), []evidence.Artifact{{Name: "session.log", Data: []byte(id)}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeProfileWithEvidence writes the embedded default profile with its own evidence.dir.
func writeProfileWithEvidence(t *testing.T, path, evDir string) {
	t.Helper()
	name, data := profiles.Default("linux")
	doc, _, err := profile.ParseDocument(name, data)
	if err != nil {
		t.Fatal(err)
	}
	doc.SetString("team", "metadata", "name")
	doc.SetString(evDir, "spec", "evidence", "dir")
	out, err := doc.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, out, 0o644))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
