//go:build !linux

package repowatch

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// Server watches one repository; it needs Linux's inotify.
type Server struct {
	Repo, Socket           string
	Git                    gitrun.Git
	Idle                   time.Duration
	MaxWatches, MaxChanges int
	Log                    io.Writer
}

// Run reports that this system has no watcher.
func (s *Server) Run(context.Context) error {
	return errors.New("repositories are watched on Linux only")
}

func peerIsThisUser(net.Conn) error { return errors.New("repositories are watched on Linux only") }
