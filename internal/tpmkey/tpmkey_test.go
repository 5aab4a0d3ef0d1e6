//go:build linux

package tpmkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/tpmtest"
)

// TestKeyInSwtpm: a key made in a real TPM 2.0 (swtpm) signs ECDSA signatures that verify
// with its public key; the same label gives the same key again, another label another key;
// the TPM refuses to duplicate it out.
func TestKeyInSwtpm(t *testing.T) {
	dev := tpmtest.Start(t)
	k, err := Load(dev, "evidence-1")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	msg := []byte("a statement")
	sig, err := k.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(k.pub, digest[:], sig) {
		t.Fatal("the TPM's signature does not verify with its public key")
	}
	if err := k.VerifySignature(bytes.NewReader(sig), bytes.NewReader([]byte("another statement"))); err == nil {
		t.Fatal("a signature verified over another message")
	}
	// Not exportable: the TPM itself reports the attributes that keep the key in it, and
	// refuses to duplicate it out.
	attrs, err := k.Attributes()
	if err != nil || !attrs.FixedTPM || !attrs.FixedParent || !attrs.SensitiveDataOrigin {
		t.Fatalf("the key's attributes in the TPM: %+v %v", attrs, err)
	}
	if err := k.Duplicate(); err == nil {
		t.Fatal("the TPM duplicated the key")
	} else {
		t.Logf("TPM2_Duplicate refused: %v", err)
	}
	again, err := Load(dev, "evidence-1")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !again.pub.Equal(k.pub) {
		t.Error("the same label on the same TPM must give the same key")
	}
	other, err := Load(dev, "evidence-2")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.pub.Equal(k.pub) {
		t.Error("another label must give another key")
	}
	if tmpl := Template("x"); !tmpl.ObjectAttributes.FixedTPM || !tmpl.ObjectAttributes.FixedParent || !tmpl.ObjectAttributes.SensitiveDataOrigin {
		t.Error("the template must keep the key in the TPM")
	}
}

// BenchmarkSignTPM: one signature by the TPM-held key (swtpm, over its Unix socket), against
// one by a file key in memory — what moving the key into a TPM costs a session, which signs
// its statement and its log's checkpoint.
func BenchmarkSignTPM(b *testing.B) {
	k, err := Load(tpmtest.Start(b), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	file, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("a statement"))
	benchtest.Pairs(b, func() error { _, err := k.SignDigest(digest[:]); return err },
		func() error { _, err := ecdsa.SignASN1(rand.Reader, file, digest[:]); return err }, "tpm", "file")
}

// BenchmarkLoadTPM: making the key ready at a session's start (TPM2_CreatePrimary re-derives
// it, then it is flushed at the end), against reading and parsing a PEM file key.
func BenchmarkLoadTPM(b *testing.B) {
	dev := tpmtest.Start(b)
	dir := b.TempDir()
	if _, err := evidence.LoadOrCreateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k.pub"), nil); err != nil {
		b.Fatal(err)
	}
	benchtest.Pairs(b, func() error {
		k, err := Load(dev, "bench")
		if err == nil {
			err = k.Close()
		}
		return err
	}, func() error {
		_, err := evidence.LoadOrCreateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k.pub"), nil)
		return err
	}, "tpm", "file")
}
