package cli

import (
	"os"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// env is the package's throw-away Podman service (nil without Podman outside CI).
var env *podmantest.Env

// asCLI makes the test binary behave as sourceosctl itself, so signal and terminal tests run
// the real process without a separate build.
const asCLI = "SOURCEOSCTL_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Exit(Main())
	}
	podmantest.Main(m, func(e *podmantest.Env) { env = e })
}

func needPodman(t *testing.T) *podmantest.Env {
	t.Helper()
	if env == nil {
		t.Skip("podman is not installed (CI=true makes this a failure)")
	}
	return env
}
