package helper_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/helper"
)

func TestInstallIsContentAddressedAndIdempotent(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		dir := filepath.Join(t.TempDir(), "helper")
		where, digest, err := helper.Located(dir, arch)
		if err != nil {
			t.Fatalf("%s: %v (build the helpers with make helper)", arch, err)
		}
		if _, err := os.Stat(where); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Located wrote %s", where)
		}
		path, digest2, err := helper.Install(dir, arch)
		if err != nil || path != where || digest2 != digest || !strings.Contains(path, "linux-"+arch) {
			t.Fatalf("Install = %s %s %v; Located said %s %s", path, digest2, err, where, digest)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("installed helper: %v %v", st, err)
		}
		// A truncated or replaced file of another size is written again.
		if err := os.WriteFile(path, []byte("#!/bin/sh\necho pwned\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := helper.Install(dir, arch); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		want, _ := helper.Binary(arch)
		if string(b) != string(want) {
			t.Fatal("a tampered helper was kept")
		}
	}
	if _, _, err := helper.Located(t.TempDir(), "mips"); !errors.Is(err, helper.ErrNotBuilt) {
		t.Fatalf("unknown architecture: %v", err)
	}
}

// TestTheRecordedDigestsAreTheBinaries' guards against a stale digest file: the plan and the
// evidence name the helper by it.
func TestTheRecordedDigestsAreTheBinaries(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		b, err := helper.Binary(arch)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if d, err := helper.Digest(arch); err != nil || d != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("%s: recorded digest %s (%v), binary sha256:%x; rebuild with make helper", arch, d, err, sum)
		}
	}
}
