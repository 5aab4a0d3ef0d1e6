package profile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/profiles"
)

// FuzzParse: no input panics, and every rejection is a located *LoadError.
func FuzzParse(f *testing.F) {
	for _, name := range profiles.ExampleNames() {
		data, _ := profiles.Example(name)
		f.Add(data)
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "seeds", "*.yaml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(valid))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := profile.Parse("fuzz.yaml", data)
		if err != nil {
			var le *profile.LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("error %T %v is not a LoadError with problems", err, err)
			}
			return
		}
		if p.APIVersion != profile.APIVersion || p.Kind != profile.Kind || p.Spec.Image.Ref == "" {
			t.Fatalf("accepted an incomplete profile: %+v", p)
		}
	})
}

func BenchmarkParseExample(b *testing.B) {
	data, _ := profiles.Example("linux-rootless")
	for i := 0; i < b.N; i++ {
		if _, err := profile.Parse("linux-rootless.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
