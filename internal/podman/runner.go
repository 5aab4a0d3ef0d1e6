// Package podman is the only package that talks to Podman: through the v5 bindings for
// containers, images and secrets, and through the podman CLI for what has no API (machines,
// named connections).
package podman

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// Runner runs an external command and returns its standard output. Tests replace it, or put
// a stub executable on PATH that replays recorded output.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec; Env, when set, replaces the environment.
type ExecRunner struct {
	Env []string
}

// Run implements Runner. A failure's error includes the command's standard error.
func (r ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if r.Env != nil {
		cmd.Env = r.Env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return stdout.Bytes(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// RunEnv implements EnvRunner: the command runs with env added to the environment.
func (r ExecRunner) RunEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	base := r.Env
	if base == nil {
		base = os.Environ()
	}
	return ExecRunner{Env: append(slices.Clip(base), env...)}.Run(ctx, name, args...)
}
