//go:build windows

package agentmachine

import (
	"context"
	"io"

	"github.com/sourceos/sourceosctl/internal/container"
)

// terminalSizes leaves a Windows console's size to the Podman bindings.
func terminalSizes(context.Context, io.Writer) <-chan container.Size { return nil }
