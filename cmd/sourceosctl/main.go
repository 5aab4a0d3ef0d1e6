// Command sourceosctl is the SourceOS workstation tool; `sourceosctl agent-machine` runs AI
// coding agents in governed Podman containers and records signed evidence of each session.
package main

import (
	"os"

	"github.com/sourceos/sourceosctl/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}
