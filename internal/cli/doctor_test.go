package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestDoctorsTimeoutReachesASlowService: against a service that accepts connections but
// never answers, each check's --timeout reaches the Podman call itself — the service sees its
// /info request cancelled — and doctor reports the check failed instead of hanging.
func TestDoctorsTimeoutReachesASlowService(t *testing.T) {
	s := podmantest.StallingService(t)
	f, out, errOut := testFactory(t)
	f.Getenv = func(k string) string {
		if k == "CONTAINER_HOST" {
			return s.URI
		}
		return ""
	}
	f.Stat, f.Engine = os.Stat, memoised(podmanEngine)
	code := run(t, f, "am", "doctor", "--timeout", "300ms", "-o", "json")
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	var r struct {
		Checks []struct{ ID, Status, Finding string }
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Checks {
		if c.ID == "podman-api" && (c.Status != "fail" || !strings.Contains(c.Finding, "300ms")) {
			t.Errorf("podman-api = %+v, want a failure at the 300ms limit", c)
		}
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case path := <-s.Cancelled:
			if strings.HasSuffix(path, "/info") {
				return
			}
		case <-deadline:
			t.Fatal("the service never saw /info cancelled: the check's time limit did not reach the call")
		}
	}
}

// TestDoctorTimeoutMustBePositive: a zero or negative limit is a usage error.
func TestDoctorTimeoutMustBePositive(t *testing.T) {
	f, _, errOut := testFactory(t)
	if code := run(t, f, "am", "doctor", "--timeout", "0s"); code != ExitUsage || !strings.Contains(errOut.String(), "--timeout must be positive, such as 10s; got 0s") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}
