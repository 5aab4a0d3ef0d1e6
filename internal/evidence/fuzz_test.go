package evidence

import (
	"encoding/base64"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// FuzzEnvelopeParsing: parsing what a bundle claims never panics, whatever the bytes. (The
// signature check is kept out of the fuzz loop: under coverage instrumentation one ECDSA
// verification takes seconds; TestModifiedPayloadsNeverVerify covers it.)
func FuzzEnvelopeParsing(f *testing.F) {
	dir := f.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k.pub"), nil)
	if err != nil {
		f.Fatal(err)
	}
	b, err := Write(filepath.Join(dir, "ev"), "s", testPredicate(), []Artifact{{Name: "session.log", Data: []byte("x\n")}}, key)
	if err != nil {
		f.Fatal(err)
	}
	var env Envelope
	raw, _ := os.ReadFile(filepath.Join(b, EnvelopeFile))
	_ = json.Unmarshal(raw, &env)
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	f.Add(payload)
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseStatement(data)
		var e Envelope
		_ = json.Unmarshal(data, &e)
		_, _ = sigstoreBundle(e)
	})
}

// TestModifiedPayloadsNeverVerify flips one random byte of the signed payload, 300 times
// (seeded, so a failure reproduces), and re-signs nothing: every one must fail to verify.
func TestModifiedPayloadsNeverVerify(t *testing.T) {
	dir, key := writeTestBundle(t)
	v, err := LoadPublicKey(pubVerifier(t, key))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, EnvelopeFile))
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	signed, _ := base64.StdEncoding.DecodeString(env.Payload)
	rng := rand.New(rand.NewSource(20261122))
	for i := 0; i < 300; i++ {
		mutated := append([]byte{}, signed...)
		pos := rng.Intn(len(mutated))
		mutated[pos] ^= byte(1 + rng.Intn(255))
		tamper := t.TempDir()
		if err := os.CopyFS(tamper, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		editBundle(t, tamper, func(e *Envelope) { e.Payload = base64.StdEncoding.EncodeToString(mutated) })
		if _, err := Verify(tamper, v); err == nil {
			t.Fatalf("mutation %d (byte %d) verified", i, pos)
		}
	}
}
