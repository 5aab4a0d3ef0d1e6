package podman_test

import (
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

func TestMain(m *testing.M) { podmantest.Main(m) }
