package cli

// Project workflows (docs/design/projects.md): test and serve run a repository's own
// commands, detected from its files, in its running workspace or else a governed session.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
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
	prof, s, _, repo, err := opts.openRepo()
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

// projectError makes a project file's problem a usage error (exit 2) with how to fix it:
// fix when nothing says how to test, else mend the file or name the command.
func projectError(err error, fix string) error {
	var fe *project.FileError
	var nt *project.NoTestsError
	switch {
	case errors.As(err, &nt):
		return &agentmachine.InputError{Err: err, Fix: fix}
	case errors.As(err, &fe):
		return &agentmachine.InputError{Err: err, Fix: "fix that file (or pick one of its steps with --name), or name the command after --"}
	}
	return err // a test file's schema problems are located already, and exit 2 as a profile's do
}

func newServeCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := newSessionOptions(f, g)
	opts.Tool = tool.Shell
	opts.offerBuild = func(ctx context.Context, err error) (bool, error) { return offerBuild(ctx, f, g, err) }
	var port int
	var sub string
	cmd := &cobra.Command{
		Use:   "serve [--repo PATH] [--port N] [--path SUBDIR] [-- COMMAND…]",
		Short: "Run the repository's dev server in its workspace and serve it on 127.0.0.1",
		Long: `Start the repository's dev server inside its governed workspace and serve its port on this
host's loopback only (http://127.0.0.1:PORT/), until Ctrl-C. When no workspace of the
repository is up, serve brings one up for the time it serves and takes it down afterwards
(its work reaches its branch, as down does).

The server listens on the container's own loopback: the container keeps its network (none,
or only the egress gateway's allowed hosts). Each connection is relayed by a join of the
workspace running sourceos-helper connect, checked and recorded like exec: the published
port is a way in to this server only, never a way out. A workspace changed behind
sourceosctl's back, or another process taking the port, ends the serving (exit 3).

What to run is read from the repository (or --path SUBDIR of it), first match wins:
  artisan                     → php artisan octane:start --host=0.0.0.0 --port=PORT
  package.json, dev script    → npm run dev -- --host 0.0.0.0 --port PORT
  package.json, start script  → PORT=PORT npm start
  composer.json               → frankenphp php-server -l :PORT
  go.mod and main.go          → PORT=PORT go run .
  manage.py                   → python3 manage.py runserver 0.0.0.0:PORT
  otherwise                   → python3 -m http.server --bind 0.0.0.0 PORT
-- COMMAND runs instead (it must listen on PORT).`,
		Example: `  sourceosctl agent-machine serve --repo ~/dev/app
  sourceosctl agent-machine serve --repo . --port 3000 --path web
  sourceosctl agent-machine serve --repo . --port 1313 -- hugo server --port 1313`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Profile = g.Profile
			if err := opts.validate(); err != nil {
				return err
			}
			if opts.Keep {
				return usageErrorf("--keep: serve runs in a workspace, kept until down")
			}
			if port < 1 || port > 65535 {
				return usageErrorf("--port %d: a port is 1-65535", port)
			}
			return runServe(cmd.Context(), opts, port, !cmd.Flags().Changed("port"), sub, args)
		},
	}
	cmd.Flags().IntVar(&port, "port", project.DefaultPort, "the `PORT` the server listens on inside, and is served on at 127.0.0.1 (default: the profile's first spec.workspace.ports, else 8000)")
	cmd.Flags().StringVar(&sub, "path", "", "run the server in `SUBDIR` of the repository")
	addSessionFlags(cmd, opts)
	return cmd
}

func runServe(ctx context.Context, opts *sessionOptions, port int, defaultPort bool, sub string, args []string) error {
	prof, s, wd, repo, err := opts.openRepo()
	if err != nil {
		return err
	}
	if ports := prof.Spec.Workspace.Ports; defaultPort && len(ports) > 0 {
		port = ports[0]
	}
	srv, err := project.DetectServer(repo, sub, port)
	if err != nil {
		var fe *project.FileError
		if errors.As(err, &fe) {
			return &agentmachine.InputError{Err: err, Fix: "fix that file, or name the server's command: serve -- COMMAND"}
		}
		return &agentmachine.InputError{Err: err, Fix: "name an existing directory of the repository (e.g. --path web), or leave --path out for its root"} // --path's own refusals
	}
	if len(args) > 0 {
		srv.Source, srv.Run = "the command line", agentmachine.ShellQuote(args)
	}
	proj := &evidence.Project{Action: "serve", Source: srv.Source, Steps: []evidence.ProjectStep{{Name: "server", Run: srv.Run}}, Dir: srv.Dir, Port: port}
	name := agentmachine.DefaultWorkspaceName(repo)
	w, err := s.Dirs.FindWorkspace(repo, prof.Metadata.Name)
	if err != nil {
		return err
	}
	if w != nil {
		name = w.Name
	}
	// Every check the real run makes before starting anything, the dry run makes too.
	running := w != nil && w.Running()
	if running {
		err = joinRefusal(opts, w, repo)
	} else {
		err = agentmachine.CheckWorkspaceName(name)
	}
	if err != nil {
		return err
	}
	// The host's port is taken first: a port in use fails here, before anything starts.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return &agentmachine.InputError{Flag: "--port", Err: err, Fix: "stop what uses it, or choose another port with --port (the server must listen on it inside too)"}
	}
	defer l.Close()
	req := agentmachine.SessionRequest{Tool: tool.Shell, Repo: repo, Secrets: opts.Secrets, AllowProtected: opts.AllowProtected, WorkDir: wd,
		Direct: opts.Direct, Branch: opts.Branch, AllowHosts: opts.AllowHosts, Auth: opts.Auth, Workspace: name}
	if opts.DryRun {
		how := "join running workspace " + name
		if !running {
			how = "bring workspace " + name + " up (the plan above) for the time it serves"
			plan, perr := s.Plan(ctx, prof, req)
			if err := printPlan(opts, plan, perr); err != nil {
				return err
			}
		}
		fmt.Fprintf(opts.IO.Out, "dry run: would %s, start `%s` (from %s) in /%s on the container's 127.0.0.1:%d, and serve it on http://127.0.0.1:%d/ only\n",
			how, srv.Run, cmp.Or(srv.Source, "the fallback"), strings.TrimPrefix(srv.Dir, "/"), port, port)
		return nil
	}
	if !running {
		fmt.Fprintf(opts.IO.ErrOut, "Bringing workspace %s up to serve from (it goes down when serving ends) …\n", name)
		res, err := upOffering(ctx, s, prof, req, false, opts.offerBuild)
		if err != nil {
			return err
		}
		w = res.Workspace
		defer func() {
			fmt.Fprintf(opts.IO.ErrOut, "Taking workspace %s down …\n", w.Name)
			if _, err := s.Down(context.WithoutCancel(ctx), prof, w.Name); err != nil {
				fmt.Fprintf(opts.IO.ErrOut, "! down %s: %v (sourceosctl agent-machine down --name %s)\n", w.Name, err, w.Name)
			}
		}()
	}
	logPath := s.Dirs.ServeLog(w.Name)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("the dev server's log: %w", err)
	}
	defer logFile.Close()
	log := io.MultiWriter(logFile, opts.IO.ErrOut)
	logrus.SetLevel(logrus.ErrorLevel) // the bindings warn when a relay's client end closes first
	fmt.Fprintf(opts.IO.ErrOut, "Starting `%s` (from %s) in workspace %s …\n", srv.Run, cmp.Or(srv.Source, "the fallback"), w.Name)
	err = s.ServeDev(ctx, prof, w, agentmachine.DevServing{Listener: l, Port: port, Command: srv.Run, Dir: srv.Dir, Project: proj,
		Log: log, LogPath: logPath, Ready: func() {
			fmt.Fprintf(opts.IO.ErrOut, "✓ Serving %s on this host only: http://127.0.0.1:%d/   (Ctrl-C stops)\n", w.Name, port)
		}})
	if ctx.Err() != nil && err == nil {
		fmt.Fprintf(opts.IO.ErrOut, "Stopped serving %s.\n", w.Name)
	}
	return err
}

func newNewCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var stack, gitURL, path string
	var auth []string
	cmd := &cobra.Command{
		Use:   "new NAME [--stack S] [--git URL] [--path PATH]",
		Short: "Start a project: a new directory (cloned or git init), its profile, its workspace up",
		Long: `Create the project NAME and bring up its workspace, ready for an editor or an agent:

  1. the directory: --path, default ~/dev/NAME (it must not exist yet);
  2. --git URL: cloned there, with git running inside a governed container whose egress
     allows only the URL's host (http and https; --auth gh or git for a private repository,
     with the profile's consent — your credentials are never used otherwise); the container
     hands back a bundle whose objects are checked on their way into the new repository, so
     nothing it wrote runs on this host. Without --git: git init;
  3. the stack: detected from the files (see init --help), or --stack;
  4. the profile NAME.yaml in the profiles directory (from --profile, default this OS's
     example), on the stack's image;
  5. the workspace NAME, up.

It prints the path, the SSH host for editors and the command to check the workspace. When a
step fails, what the command made is removed (the directory and the profile); a clone's
evidence bundle stays.`,
		Example: `  sourceosctl agent-machine new blog --stack go
  sourceosctl agent-machine new api --git https://github.com/example/api.git
  sourceosctl agent-machine new site --git https://git.example.com/site.git --path ~/work/site --auth git`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNew(cmd.Context(), f, g, args[0], path, stack, gitURL, auth)
		},
	}
	cmd.Flags().StringVar(&stack, "stack", "", "the project's `STACK` (go, node@18 …; none for the default image; default: detected)")
	cmd.Flags().StringVar(&gitURL, "git", "", "clone the repository at `URL` (http or https) instead of git init")
	cmd.Flags().StringVar(&path, "path", "", "the project's directory `PATH` (default ~/dev/NAME)")
	cmd.Flags().StringSliceVar(&auth, "auth", nil, "credentials for the clone: `NAMES` among "+strings.Join(policy.AuthNames(), ", ")+" (the profile must consent; injected by the egress gateway)")
	return cmd
}

func runNew(ctx context.Context, f *Factory, g *GlobalOptions, name, path, stack, gitURL string, auth []string) (err error) {
	if err := agentmachine.CheckWorkspaceName(name); err != nil {
		return err
	}
	if gitURL != "" {
		if _, err := agentmachine.CloneHost(gitURL); err != nil {
			return err
		}
	} else if len(auth) > 0 {
		return usageErrorf("--auth: credentials are for the clone of --git; without --git nothing is cloned")
	}
	for _, a := range auth {
		if !slices.Contains(policy.AuthNames(), a) {
			return usageErrorf("--auth %s: not a known credential; use %s", a, strings.Join(policy.AuthNames(), ", "))
		}
	}
	if stack != "" && stack != "none" {
		if _, err := image.DefaultCatalog().Resolve([]string{stack}); err != nil {
			return err
		}
	}
	home, err := f.Home()
	if err != nil {
		return fmt.Errorf("find home directory: %w", err)
	}
	wd, _ := f.WorkDir()
	if path == "" {
		path = filepath.Join(home, "dev", name)
	} else if path, err = profile.ResolvePath(path, home, wd); err != nil {
		return &agentmachine.InputError{Flag: "--path", Err: err}
	}
	if _, err := os.Lstat(path); err == nil {
		return &agentmachine.InputError{Flag: "--path", Err: fmt.Errorf("%s already exists; new makes a project from nothing", path),
			Fix: "for an existing repository: sourceosctl agent-machine init --repo " + path + " && sourceosctl agent-machine up --repo " + path}
	}
	dirs := agentmachine.DirsFor(f.GOOS, f.Getenv, home)
	profilePath := filepath.Join(dirs.ProfilesDir(), name+".yaml")
	if _, err := os.Lstat(profilePath); err == nil {
		return &agentmachine.InputError{Flag: "NAME", Err: fmt.Errorf("a profile %s already exists", profilePath), Fix: "choose another name, or remove that profile"}
	}
	s, err := f.Session(g)
	if err != nil {
		return err
	}
	var base *profile.Profile
	if gitURL != "" {
		if base, err = f.LoadProfile(g.Profile); err != nil {
			return err
		}
	}

	// From here on, a failure removes what was made: the directory, the parents made for it
	// (the highest is top), the profile.
	top := path
	for p := filepath.Dir(path); p != filepath.Dir(p); p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		top = p
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		return err
	}
	wrote := false
	defer func() {
		if err == nil {
			return
		}
		what := top
		if wrote {
			what += " and the profile " + profilePath
			if rerr := os.Remove(profilePath); rerr != nil {
				fmt.Fprintf(f.IO.ErrOut, "! could not remove the profile %s: %v\n", profilePath, rerr)
			}
		}
		if rerr := os.RemoveAll(top); rerr != nil {
			fmt.Fprintf(f.IO.ErrOut, "! could not remove %s: %v; remove it by hand\n", top, rerr)
			return
		}
		fmt.Fprintf(f.IO.ErrOut, "! removed %s: the project was not made\n", what)
	}()
	if err := s.MakeRepository(ctx, base, path, gitURL, auth); err != nil {
		return err
	}
	res, err := agentmachine.Init(agentmachine.InitRequest{Source: g.Profile, Repo: path, Name: name, Stack: stack,
		GOOS: f.GOOS, Home: home, WorkDir: wd, Dirs: dirs})
	if err != nil {
		return err
	}
	wrote = true
	for _, w := range res.Warnings {
		fmt.Fprintf(f.IO.ErrOut, "! %s\n", w)
	}
	prof, err := f.LoadProfile(res.Path)
	if err != nil {
		return err
	}
	up, err := upOffering(ctx, s, prof, agentmachine.SessionRequest{Tool: tool.Shell, Repo: path, WorkDir: wd, Workspace: name}, false,
		func(ctx context.Context, err error) (bool, error) { return offerBuild(ctx, f, g, err) })
	if err != nil {
		return err
	}
	w := up.Workspace
	stackText := "none (the default image)"
	if res.Stack != "" {
		stackText = res.Stack + " (" + res.Image + ")"
	}
	fmt.Fprintf(f.IO.ErrOut, `✓ Project %s is ready.
  path:      %s
  stack:     %s
  profile:   %s
  workspace: %s (container %.12s), on its own copy and branch
  editors:   sourceosctl agent-machine ssh-config %s --write, then SSH host %s (VS Code Remote-SSH, Zed, JetBrains Gateway)
  verify:    sourceosctl agent-machine status
  work:      sourceosctl agent-machine --profile %s run --tool claude-code --repo %s
`, name, path, stackText, res.Path, w.Name, w.ContainerID, w.Name, agentmachine.SSHHost(w.Name), res.Path, path)
	fmt.Fprintln(f.IO.Out, path)
	return nil
}
