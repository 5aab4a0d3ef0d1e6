package cli

import (
	"os"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// asCLI makes the test binary behave as sourceosctl itself, so signal and terminal tests run
// the real process without a separate build.
const asCLI = "SOURCEOSCTL_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Exit(Main())
	}
	podmantest.Main(m)
}
