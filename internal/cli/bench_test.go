package cli

import (
	"bytes"
	"context"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkFingerprintCommand runs `fingerprint` in-process against the harness's service.
func BenchmarkFingerprintCommand(b *testing.B) {
	e := podmantest.Need(b)
	for i := 0; i < b.N; i++ {
		f, out, _ := benchFactory(b, e)
		if code := Run(context.Background(), f, []string{"am", "fingerprint"}); code != 0 {
			b.Fatalf("exit %d", code)
		}
		_ = out
	}
}

func benchFactory(b *testing.B, e *podmantest.Env) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	f, out, errOut := testFactory(b)
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return e.URI
		}
		return ""
	}
	return f, out, errOut
}

// BenchmarkDoctorCommand runs `doctor` in-process against the harness's service: its wall
// time is what a user waits for.
func BenchmarkDoctorCommand(b *testing.B) {
	e := podmantest.Need(b)
	for i := 0; i < b.N; i++ {
		f, _, _ := benchFactory(b, e)
		if code := Run(context.Background(), f, []string{"am", "doctor", "--repo", "."}); code > 1 {
			b.Fatalf("exit %d", code)
		}
	}
}
