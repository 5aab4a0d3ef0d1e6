package evidence

import (
	"path/filepath"
	"strconv"
	"testing"
)

// A typical bundle: the predicate plus a session log, policy, plan and a 200 KiB inspect.
func benchArtifacts() []Artifact {
	inspect := make([]byte, 200<<10)
	for i := range inspect {
		inspect[i] = byte('a' + i%26)
	}
	return []Artifact{{Name: "session.log", Data: []byte("created\nstarted\nexited 0\n")}, {Name: "policy.json", Data: []byte(`{"network":"none"}`)},
		{Name: "plan.json", Data: make([]byte, 8<<10)}, {Name: "container-inspect.json", Data: inspect}}
}

func BenchmarkSignBundle(b *testing.B) {
	base := b.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(base, "k"), filepath.Join(base, "k.pub"), nil)
	if err != nil {
		b.Fatal(err)
	}
	arts := benchArtifacts()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Write(filepath.Join(base, "ev"), "s"+strconv.Itoa(i), testPredicate(), arts, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyBundle(b *testing.B) {
	base := b.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(base, "k"), filepath.Join(base, "k.pub"), nil)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := Write(filepath.Join(base, "ev"), "s", testPredicate(), benchArtifacts(), key)
	if err != nil {
		b.Fatal(err)
	}
	v, err := LoadPublicKey(filepath.Join(base, "k.pub"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(dir, v); err != nil {
			b.Fatal(err)
		}
	}
}
