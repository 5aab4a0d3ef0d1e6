package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ita "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sourceos/sourceosctl/internal/cosigntest"
)

func testPredicate() *Predicate { return SamplePredicate("20261122t120000z-000000000000") }

func writeTestBundle(t *testing.T) (dir string, key *Key) {
	t.Helper()
	base := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(base, "keys", "evidence.key"), filepath.Join(base, "keys", "evidence.pub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err = Write(filepath.Join(base, "evidence"), "20261122t120000z-000000000000", testPredicate(),
		[]Artifact{{Name: "session.log", Data: []byte("created\nstarted\n")}, {Name: "policy.json", Data: []byte(`{"network":"none"}`)}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return dir, key
}

func pubVerifier(t *testing.T, key *Key) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.pub")
	if err := os.WriteFile(path, key.PublicPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteThenVerify(t *testing.T) {
	dir, key := writeTestBundle(t)
	v, err := LoadPublicKey(pubVerifier(t, key))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(dir, v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Statement.Predicate.Session.ID != "20261122t120000z-000000000000" || len(got.Statement.Subject) != 3 {
		t.Errorf("statement = %+v", got.Statement)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("evidence dir holds %d entries, want only the bundle (no temp dir)", len(entries))
	}
	st, _ := os.Stat(key.Path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
}

// TestStatementRoundTripsThroughInToto parses the signed payload with in-toto's own types,
// strictly, as stock verifiers do.
func TestStatementRoundTripsThroughInToto(t *testing.T) {
	dir, _ := writeTestBundle(t)
	var env Envelope
	raw, _ := os.ReadFile(filepath.Join(dir, EnvelopeFile))
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	if env.Signatures[0].KeyID != "" {
		t.Errorf("keyid = %q, want empty (sigstore's verifier skips keyids it did not derive)", env.Signatures[0].KeyID)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	var st ita.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(payload, &st); err != nil {
		t.Fatalf("in-toto rejects the statement: %v", err)
	}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	if st.Subject[0].Digest["gitCommit"] != strings.Repeat("a", 40) {
		t.Errorf("first subject = %v, want the git commit", st.Subject[0])
	}
}

func TestTamperingIsCaught(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string, key *Key) string // returns the key path to verify with
		check  string
	}{
		{"flipped payload byte", func(t *testing.T, dir string, key *Key) string {
			editBundle(t, dir, func(env *Envelope) {
				p, _ := base64.StdEncoding.DecodeString(env.Payload)
				p[len(p)/2] ^= 1
				env.Payload = base64.StdEncoding.EncodeToString(p)
			})
			return pubVerifier(t, key)
		}, CheckSignature},
		{"flipped signature byte", func(t *testing.T, dir string, key *Key) string {
			editBundle(t, dir, func(env *Envelope) {
				s, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
				s[10] ^= 1
				env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(s)
			})
			return pubVerifier(t, key)
		}, CheckSignature},
		{"another key", func(t *testing.T, dir string, key *Key) string {
			other, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "o.key"), filepath.Join(t.TempDir(), "o.pub"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return pubVerifier(t, other)
		}, CheckSignature},
		{"truncated bundle", func(t *testing.T, dir string, key *Key) string {
			p := filepath.Join(dir, BundleFile)
			b, _ := os.ReadFile(p)
			_ = os.WriteFile(p, b[:len(b)/2], 0o644)
			return pubVerifier(t, key)
		}, CheckBundle},
		{"edited artifact", func(t *testing.T, dir string, key *Key) string {
			_ = os.WriteFile(filepath.Join(dir, ArtifactsDir, "session.log"), []byte("created\nnothing happened\n"), 0o644)
			return pubVerifier(t, key)
		}, CheckArtifacts},
		{"deleted artifact", func(t *testing.T, dir string, key *Key) string {
			_ = os.Remove(filepath.Join(dir, ArtifactsDir, "policy.json"))
			return pubVerifier(t, key)
		}, CheckArtifacts},
		{"added artifact", func(t *testing.T, dir string, key *Key) string {
			_ = os.WriteFile(filepath.Join(dir, ArtifactsDir, "extra.txt"), []byte("x"), 0o644)
			return pubVerifier(t, key)
		}, CheckUnreferenc},
		{"a file beside the attestation files", func(t *testing.T, dir string, key *Key) string {
			_ = os.WriteFile(filepath.Join(dir, "README.txt"), []byte("trust me"), 0o644)
			return pubVerifier(t, key)
		}, CheckUnreferenc},
		{"a directory beside artifacts/", func(t *testing.T, dir string, key *Key) string {
			_ = os.Mkdir(filepath.Join(dir, "more"), 0o755)
			return pubVerifier(t, key)
		}, CheckUnreferenc},
		{"a directory inside artifacts/", func(t *testing.T, dir string, key *Key) string {
			_ = os.Mkdir(filepath.Join(dir, ArtifactsDir, "nested"), 0o755)
			return pubVerifier(t, key)
		}, CheckUnreferenc},
		{"a signed artifact's name as a symlink elsewhere", func(t *testing.T, dir string, key *Key) string {
			p := filepath.Join(dir, ArtifactsDir, "policy.json")
			b, _ := os.ReadFile(p)
			other := filepath.Join(t.TempDir(), "policy.json")
			_ = os.WriteFile(other, b, 0o644)
			_ = os.Remove(p)
			_ = os.Symlink(other, p)
			return pubVerifier(t, key)
		}, CheckUnreferenc},
		{"bare envelope differs", func(t *testing.T, dir string, key *Key) string {
			p := filepath.Join(dir, EnvelopeFile)
			b, _ := os.ReadFile(p)
			_ = os.WriteFile(p, []byte(strings.Replace(string(b), `"payloadType"`, `"payloadType" `, 1)+" "), 0o644)
			var env Envelope
			_ = json.Unmarshal(b, &env)
			env.PayloadType = "text/plain"
			out, _ := json.Marshal(env)
			_ = os.WriteFile(p, out, 0o644)
			return pubVerifier(t, key)
		}, CheckEnvelope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, key := writeTestBundle(t)
			keyPath := tt.tamper(t, dir, key)
			v, err := LoadPublicKey(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Verify(dir, v)
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Check != tt.check {
				t.Fatalf("error = %v, want the %s check to fail", err, tt.check)
			}
		})
	}
}

// editBundle changes the envelope in both files consistently, as an attacker would.
func editBundle(t *testing.T, dir string, edit func(*Envelope)) {
	t.Helper()
	raw, _ := os.ReadFile(filepath.Join(dir, EnvelopeFile))
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	edit(&env)
	out, _ := json.MarshalIndent(env, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, EnvelopeFile), append(out, '\n'), 0o644)
	b, err := sigstoreBundle(env)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, BundleFile), b, 0o644)
}

func TestMaskEnvironment(t *testing.T) {
	env := MaskEnvironment([]string{"TERM=xterm", "GITHUB_TOKEN=ghp_secret", "PATH=/bin", "EMPTY="})
	if env.Variables["TERM"] != "xterm" || env.Variables["GITHUB_TOKEN"] != "***" || env.Variables["PATH"] != "***" {
		t.Fatalf("variables = %v", env.Variables)
	}
}

func TestNoCanaryInTheBundle(t *testing.T) {
	dir, _ := writeTestBundle(t)
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), "canary-value-1234") {
				t.Errorf("%s contains the canary secret value", p)
			}
			if env := decodedPayload(b); strings.Contains(env, "canary-value-1234") {
				t.Errorf("%s's payload contains the canary secret value", p)
			}
		}
		return nil
	})
}

func decodedPayload(b []byte) string {
	var env Envelope
	if json.Unmarshal(b, &env) != nil {
		return ""
	}
	p, _ := base64.StdEncoding.DecodeString(env.Payload)
	return string(p)
}

// TestCosignVerifiesTheBundle is the auditor without our tool: stock cosign v3.1.3 checks
// the Sigstore bundle with the public key, the predicate type and an artifact.
func TestCosignVerifiesTheBundle(t *testing.T) {
	cosign := cosigntest.Binary(t)
	if cosign == "" {
		t.Skip("this test is the cosign cross-check itself (CI=true makes a missing cosign a failure)")
	}
	dir, key := writeTestBundle(t)
	pub := pubVerifier(t, key)
	args := []string{"verify-blob-attestation", "--key", pub, "--bundle", filepath.Join(dir, BundleFile),
		"--type", PredicateType, "--insecure-ignore-tlog", filepath.Join(dir, ArtifactsDir, "session.log")}
	out, err := exec.Command(cosign, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cosign rejected the bundle: %v\n%s", err, out)
	}
	// And it must reject an edited artifact.
	_ = os.WriteFile(filepath.Join(dir, ArtifactsDir, "session.log"), []byte("forged\n"), 0o644)
	if out, err := exec.Command(cosign, args...).CombinedOutput(); err == nil {
		t.Fatalf("cosign accepted an edited artifact:\n%s", out)
	}
}

// TestEncryptedKey stores the key the way cosign does when a password is set, and needs the
// password to load it again.
func TestEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	if _, err := LoadOrCreateKey(priv, pub, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(priv)
	if !strings.HasPrefix(string(raw), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
		t.Fatalf("key file starts %.40q, want cosign's encrypted PEM", raw)
	}
	if _, err := LoadOrCreateKey(priv, pub, nil); err == nil || !strings.Contains(err.Error(), "SOURCEOSCTL_KEY_PASSWORD") {
		t.Errorf("loading without the password: %v", err)
	}
	if _, err := LoadOrCreateKey(priv, pub, []byte("wrong")); err == nil {
		t.Error("a wrong password was accepted")
	}
	if k, err := LoadOrCreateKey(priv, pub, []byte("pw")); err != nil || k.Created {
		t.Errorf("reload: %v (created %v)", err, k != nil && k.Created)
	}
}

func TestUnreadableKeyIsAClearError(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "k")
	if err := os.WriteFile(priv, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateKey(priv, filepath.Join(dir, "k.pub"), nil)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Path != priv {
		t.Fatalf("error %v, want a KeyError naming %s", err, priv)
	}
}

// TestConcurrentKeyCreation: sessions starting at once on a new host all end up with the
// one key that was created.
func TestConcurrentKeyCreation(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	keys := make([]*Key, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); keys[i], errs[i] = LoadOrCreateKey(priv, pub, nil) }()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatalf("session %d: %v", i, errs[i])
		}
		if string(keys[i].PublicPEM) != string(keys[0].PublicPEM) {
			t.Fatalf("session %d got a different key", i)
		}
	}
}

// TestDanglingKeyLinkIsAClearError: a signing key that is a symbolic link to nothing is an
// error naming the link and its target (it made key creation and loading call each other
// until the stack overflowed), and nothing is written through it.
func TestDanglingKeyLinkIsAClearError(t *testing.T) {
	dir := t.TempDir()
	priv, pub, target := filepath.Join(dir, "evidence.key"), filepath.Join(dir, "evidence.pub"), filepath.Join(dir, "gone", "key.pem")
	if err := os.Symlink(target, priv); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateKey(priv, pub, nil)
	var ke *KeyError
	if !errors.As(err, &ke) || !strings.Contains(err.Error(), "symbolic link to "+target) {
		t.Fatalf("err = %v, want a KeyError naming the link's target", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("something was written through the link: %v", err)
	}
}

// TestDeletedPublicKeyIsMadeAgain: the public key beside the signing key is written again
// when it is missing (verifiers read it).
func TestDeletedPublicKeyIsMadeAgain(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "evidence.key"), filepath.Join(dir, "evidence.pub")
	k, err := LoadOrCreateKey(priv, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(pub); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(priv, pub, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(pub); err != nil || !bytes.Equal(b, k.PublicPEM) {
		t.Errorf("public key after reload: %q, %v", b, err)
	}
}
