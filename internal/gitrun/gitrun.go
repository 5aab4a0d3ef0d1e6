// Package gitrun runs the git CLI in a user's own repository, as that repository's owner.
//
// sourceosctl runs git only where the repository is trusted: the user's own repository,
// which no session can write (the agent works on a copy; see internal/repocopy). When root
// runs a session on another user's repository, git runs as that user — with their identity
// and home — so the repository's configuration (hooks, fsmonitor, filters) can never run a
// program as root, and git's ownership check (safe.directory) is satisfied without being
// overridden.
package gitrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/sourceos/sourceosctl/internal/fileowner"
)

// ErrAnotherUser says the repository belongs to another user and this process cannot run
// git as them (it is not root): read it without git (go-git) or not at all.
var ErrAnotherUser = errors.New("the repository belongs to another user")

// Git is the git CLI.
type Git struct {
	// Binary is git's path; empty when git is not installed.
	Binary string
	// Env are variables added to every command's environment (see With).
	Env []string
	// Config are settings (name=value) given to every command with -c (see WithConfig).
	Config []string
}

// Command returns git with args, run in repo (-C) as repo's owner. Its environment is this
// process's, with HOME set to the owner's home when it runs as another user.
func (g Git) Command(ctx context.Context, repo string, args ...string) (*exec.Cmd, error) {
	if g.Binary == "" {
		return nil, errors.New("git is not installed")
	}
	full := []string{"-C", repo}
	for _, kv := range g.Config {
		full = append(full, "-c", kv)
	}
	cmd := exec.CommandContext(ctx, g.Binary, append(full, args...)...)
	if err := asOwner(cmd, repo); err != nil {
		return nil, err
	}
	if len(g.Env) > 0 {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, g.Env...)
	}
	return cmd, nil
}

// Output runs git and returns its standard output without the final newlines; a failure
// carries git's standard error.
func (g Git) Output(ctx context.Context, repo string, args ...string) (string, error) {
	out, err := g.Raw(ctx, repo, args...)
	return strings.TrimRight(string(out), "\n"), err
}

// Raw runs git and returns its standard output as it is (a patch keeps every byte).
func (g Git) Raw(ctx context.Context, repo string, args ...string) ([]byte, error) {
	cmd, err := g.Command(ctx, repo, args...)
	if err != nil {
		return nil, err
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), &Error{Args: args, Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return out.Bytes(), nil
}

// Error is a failed git command.
type Error struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

func (e *Error) Unwrap() error { return e.Err }

// RunsAsAnother reports whether git would run as another user than this process in repo
// (root on another user's repository).
func RunsAsAnother(repo string) bool {
	uid, _, ok := fileowner.Of(repo)
	return ok && uid != euid()
}

// With returns g adding environment variables (NAME=value) to the commands it runs.
func (g Git) With(env ...string) Git {
	g.Env = append(append([]string{}, g.Env...), env...)
	return g
}

// WithConfig returns g giving settings (name=value) to the commands it runs.
func (g Git) WithConfig(settings ...string) Git {
	g.Config = append(append([]string{}, g.Config...), settings...)
	return g
}
