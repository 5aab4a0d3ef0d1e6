package cli

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkFingerprintCommand runs `fingerprint` in-process against the harness's service.
func BenchmarkFingerprintCommand(b *testing.B) {
	if env == nil {
		b.Skip("podman is not installed")
	}
	for i := 0; i < b.N; i++ {
		f, out, _ := benchFactory(b)
		if code := Run(context.Background(), f, []string{"am", "fingerprint"}); code != 0 {
			b.Fatalf("exit %d", code)
		}
		_ = out
	}
}

func benchFactory(b *testing.B) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	f, out, errOut := testFactory(b)
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return env.URI
		}
		return ""
	}
	return f, out, errOut
}

// BenchmarkDoctorCommand runs `doctor` in-process against the harness's service: its wall
// time is what a user waits for.
func BenchmarkDoctorCommand(b *testing.B) {
	if env == nil {
		b.Skip("podman is not installed")
	}
	for i := 0; i < b.N; i++ {
		f, _, _ := benchFactory(b)
		if code := Run(context.Background(), f, []string{"am", "doctor", "--repo", "."}); code > 1 {
			b.Fatalf("exit %d", code)
		}
	}
}
