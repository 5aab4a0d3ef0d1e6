package cli

// Project workflows (docs/design/projects.md): test and serve run a repository's own
// commands, detected from its files, in its running workspace or else a governed session.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/project"
	"github.com/sourceos/sourceosctl/internal/tool"
)

func newTestCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := newSessionOptions(f, g)
	opts.Tool = tool.Shell
	var step string
	cmd := &cobra.Command{
		Use:   "test [--repo PATH] [--name STEP] [-- COMMAND [ARG...]]",
		Short: "Run the repository's tests in a governed container",
		Long: `Run the repository's tests inside a governed container: in its running workspace when
one is up (a join, checked again first), else in a session of its own on a copy of your
HEAD and uncommitted changes. The exit code is the tests'; the run leaves an evidence
bundle naming the command and the file it came from.

How to test is read from the repository, first match wins:
  .sourceos/test.yaml, then .core/test.yaml (the same format)
  composer.json with a test script   → composer test
  package.json with a test script    → npm test
  go.mod                             → go test ./...
  pytest.ini or pyproject.toml       → pytest
  Taskfile.yaml                      → task test
-- COMMAND overrides them all.

test.yaml:
  version: 1
  command: make check            # runs first (reported as "command")
  commands:                      # then these, in order; --name NAME runs one
    - name: unit
      run: go test ./...
    - name: lint
      run: go vet ./...
  env:                           # set for every command
    APP_ENV: testing

Each command is a shell command line; the run stops at the first that fails and reports
each (name, exit code, time). The container's network is the profile's: with the
gateway, tests that download dependencies need those hosts allowed (--allow-host).`,
		Example: `  sourceosctl agent-machine test --repo ~/dev/app
  sourceosctl agent-machine test --repo . --name unit
  sourceosctl agent-machine test --repo . -- go test -run TestLogin ./auth
  sourceosctl agent-machine test --repo . --dry-run`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Profile = g.Profile
			if err := opts.validate(); err != nil {
				return err
			}
			if step != "" && len(args) > 0 {
				return usageErrorf("--name picks a command of the test file; -- COMMAND replaces them: give one of them")
			}
			return runTest(cmd.Context(), opts, step, args)
		},
	}
	cmd.Flags().StringVar(&step, "name", "", "run only the test file's command `STEP`")
	addSessionFlags(cmd, opts)
	return cmd
}

func runTest(ctx context.Context, opts *sessionOptions, step string, args []string) error {
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	s, err := opts.Session()
	if err != nil {
		return err
	}
	wd, _ := opts.WorkDir()
	repo, err := workspaceRepo(s, prof, opts.Repo, wd)
	if err != nil {
		return err
	}
	tests := &project.Tests{Source: "the command line", Steps: []project.Step{{Name: "command", Run: agentmachine.ShellQuote(args)}}}
	opts.Args = args
	if len(args) == 0 {
		if tests, err = project.DetectTests(repo, step); err != nil {
			return projectError(err, "add .sourceos/test.yaml (see test --help), or name the command: test -- make test")
		}
		opts.Args = tests.Argv()
	}
	opts.Repo = repo
	opts.project = &evidence.Project{Action: "test", Source: tests.Source, Env: tests.EnvNames()}
	for _, st := range tests.Steps {
		opts.project.Steps = append(opts.project.Steps, evidence.ProjectStep{Name: st.Name, Run: st.Run})
	}
	if !opts.DryRun {
		fmt.Fprintf(opts.IO.ErrOut, "Testing %s with %s (from %s)\n", repo, describeSteps(tests.Steps), tests.Source)
	}
	err = runSessionWith(ctx, opts, prof, s)
	var te *agentmachine.ToolExitError
	if errors.As(err, &te) && te.Code == exitNotFound {
		if st, _ := project.DetectStack(repo); st != nil && st.ID != "" {
			fmt.Fprintf(opts.IO.ErrOut, "hint: exit %d is a command the image %s does not have; %s is a %s project: give it the stack's image with\n  sourceosctl agent-machine image build --stack %s && sourceosctl agent-machine init --repo %s --stack %s\n",
				exitNotFound, prof.Spec.Image.Ref, repo, st.ID, st.ID, repo, st.ID)
		}
	}
	return err
}

// exitNotFound is the shell's exit code for a command it cannot find.
const exitNotFound = 127

// describeSteps names the command, or the steps' names.
func describeSteps(steps []project.Step) string {
	if len(steps) == 1 {
		return "`" + steps[0].Run + "`"
	}
	var names []string
	for _, st := range steps {
		names = append(names, st.Name)
	}
	return fmt.Sprintf("%d commands (%s)", len(steps), strings.Join(names, ", "))
}

// projectError makes a project file's problem a usage error (exit 2) with how to fix it.
func projectError(err error, fix string) error {
	var fe *project.FileError
	var nt *project.NoTestsError
	if errors.As(err, &fe) || errors.As(err, &nt) {
		return &agentmachine.InputError{Err: err, Fix: fix}
	}
	return err // a test file's schema problems are located already, and exit 2 as a profile's do
}
