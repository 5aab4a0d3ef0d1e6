//go:build linux

package tpmkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"testing"

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
