//go:build !windows

package agentmachine

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/sourceos/sourceosctl/internal/container"
)

// terminalSizes follows the size of out's terminal (when out is one) until ctx ends: its size
// now, then after each SIGWINCH. Nil when out is not a terminal.
func terminalSizes(ctx context.Context, out io.Writer) <-chan container.Size {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	sizes := make(chan container.Size, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	send := func() {
		if w, h, err := term.GetSize(int(f.Fd())); err == nil {
			select {
			case sizes <- container.Size{Rows: uint16(h), Cols: uint16(w)}:
			default: // the previous one is still unread: this one replaces it next time
			}
		}
	}
	send()
	go func() {
		defer signal.Stop(winch)
		defer close(sizes)
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				send()
			}
		}
	}()
	return sizes
}
