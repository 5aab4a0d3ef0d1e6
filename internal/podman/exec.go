package podman

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	dockercontainer "github.com/docker/docker/api/types/container"

	"github.com/sourceos/sourceosctl/internal/container"
)

// Exec runs a command in the running container id, its streams attached, and returns its
// exit code. With a TTY the bindings put this process's terminal in raw mode and follow its
// size, as an attach does.
func (c *Client) Exec(ctx context.Context, id string, x container.Exec, in io.Reader, out, errOut io.Writer) (int, error) {
	env := make([]string, 0, len(x.Env))
	for k, v := range x.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cfg := &handlers.ExecCreateConfig{ExecOptions: dockercontainer.ExecOptions{
		User: x.User, Tty: x.TTY, AttachStdin: in != nil, AttachStdout: true, AttachStderr: !x.TTY,
		Env: env, WorkingDir: x.WorkDir, Cmd: x.Command,
	}}
	cctx, cancel := c.call(ctx, callTimeout)
	session, err := containers.ExecCreate(cctx, id, cfg)
	cancel()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", short(id), err)
	}
	if x.Created != nil {
		x.Created(session)
	}
	opts := new(containers.ExecStartAndAttachOptions).WithOutputStream(out).WithAttachOutput(true)
	if !x.TTY {
		opts = opts.WithErrorStream(errOut).WithAttachError(true)
	}
	if in != nil {
		opts = opts.WithInputStream(*bufio.NewReader(in)).WithAttachInput(true)
	}
	actx := valuesFrom{Context: ctx, values: c.conn}
	if x.TTY && x.Resize != nil {
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go c.followSize(rctx, session, x.Resize)
	}
	if err := containers.ExecStartAndAttach(actx, session, opts); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", short(id), err)
	}
	ictx, cancel := c.call(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	st, err := containers.ExecInspect(ictx, session, nil)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", short(id), err)
	}
	return st.ExitCode, nil
}

// followSize gives the exec session's terminal each size from sizes. The first may arrive
// before the session runs, when the service refuses a resize: it is tried again briefly.
func (c *Client) followSize(ctx context.Context, session string, sizes <-chan container.Size) {
	// A size given before the process runs is lost: wait until it runs.
	for try := 0; try < 200; try++ {
		cctx, cancel := c.call(ctx, callTimeout)
		st, err := containers.ExecInspect(cctx, session, nil)
		cancel()
		if ctx.Err() != nil || err == nil && (st.Running || st.ExitCode != 0) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		var size container.Size
		select {
		case <-ctx.Done():
			return
		case s, ok := <-sizes:
			if !ok {
				return
			}
			size = s
		}
		for try := 0; try < 50; try++ {
			cctx, cancel := c.call(ctx, callTimeout)
			err := containers.ResizeExecTTY(cctx, session, new(containers.ResizeExecTTYOptions).WithHeight(int(size.Rows)).WithWidth(int(size.Cols)))
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// Usage is what the running container id uses now (one sample, not a stream).
func (c *Client) Usage(ctx context.Context, id string) (container.Usage, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	reports, err := containers.Stats(cctx, []string{id}, new(containers.StatsOptions).WithStream(false))
	if err != nil {
		return container.Usage{}, fmt.Errorf("statistics of container %s: %w", short(id), err)
	}
	for r := range reports {
		if r.Error != nil {
			return container.Usage{}, fmt.Errorf("statistics of container %s: %w", short(id), r.Error)
		}
		for _, s := range r.Stats {
			return container.Usage{CPUPercent: s.CPU, MemoryBytes: s.MemUsage, MemoryLimit: s.MemLimit, PIDs: s.PIDs}, nil
		}
	}
	return container.Usage{}, fmt.Errorf("statistics of container %s: the service sent none", short(id))
}
