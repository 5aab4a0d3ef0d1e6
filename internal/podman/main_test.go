package podman_test

import (
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// env is the package's throw-away Podman service; nil when Podman is not installed outside CI.
var env *podmantest.Env

func TestMain(m *testing.M) {
	podmantest.Main(m, func(e *podmantest.Env) { env = e })
}

func needPodman(t *testing.T) *podmantest.Env {
	t.Helper()
	if env == nil {
		t.Skip("podman is not installed (CI=true makes this a failure)")
	}
	return env
}
