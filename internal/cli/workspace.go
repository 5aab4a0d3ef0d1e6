package cli

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// Workspaces (docs/design/workspaces.md): up, exec, down, rm; shell and run join a running
// workspace of their repository and profile.

func newUpCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := newSessionOptions(f, g)
	opts.offerBuild = func(ctx context.Context, err error) (bool, error) { return offerBuild(ctx, f, g, err) }
	var name string
	var fresh bool
	var ide ideOptions
	cmd := &cobra.Command{
		Use:   "up [--repo PATH] [--name NAME] [--tool TOOL] [--fresh] [--ide [--ide-port PORT]]",
		Short: "Bring up a workspace that keeps running: exec, shell and run join it",
		Long: `Bring up a governed workspace for the repository and profile: the same container a
session gets (policy, hardening, its own copy and branch, the egress gateway), checked the
same way — the server's inspect compared with the plan, then sourceos-helper from inside —
kept running. exec, shell and run on the same repository join it instead of creating a
container; each join is checked again and leaves its own evidence bundle.

One workspace per repository and profile, named after the repository's directory unless
--name says otherwise. Running up again on a running workspace checks it and changes
nothing; after down it starts again on the same copy, so files the agent left there are
still there. --fresh brings it down first (its work reaches its branch) and starts over
from a new copy of your HEAD and uncommitted changes.

With spec.network: gateway the gateway runs in a sidecar container beside it (it must
outlive this command); injected secrets are read at each up and reach only the gateway. A
workspace cannot hold a plain --secret: its value would live as long as the container.

--ide serves VS Code in the browser (code-server, from an image built with image build
--ide) for the workspace, until Ctrl-C; the workspace stays up after it. code-server runs
inside the container on its loopback; this command serves it on this host's loopback only
(127.0.0.1, port --ide-port or a free one) behind the workspace's own token, which the
address it prints carries once (then a cookie; the token never enters the container). Each
connection the browser makes is relayed by a join of the workspace, checked and recorded
like exec; a workspace changed behind sourceosctl's back ends the serving.`,
		Example: `  sourceosctl agent-machine up --repo ~/dev/app
  sourceosctl agent-machine up --repo . --tool claude-code --auth anthropic
  sourceosctl agent-machine exec --repo . -- go test ./...
  sourceosctl agent-machine up --repo . --fresh
  sourceosctl agent-machine up --repo . --dry-run
  sourceosctl agent-machine image build --ide && sourceosctl agent-machine up --repo . --ide`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if opts.Tool == "" {
				opts.Tool = tool.Shell
			}
			if opts.Keep {
				return usageErrorf("--keep: a workspace is kept until down or rm")
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if err := ide.validate(cmd); err != nil {
				return err
			}
			return runUp(cmd.Context(), opts, name, fresh, ide)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the workspace's `NAME` (default: the repository directory's name)")
	cmd.Flags().BoolVar(&ide.On, "ide", false, "serve the browser IDE (code-server) on 127.0.0.1 until Ctrl-C")
	cmd.Flags().IntVar(&ide.Port, "ide-port", 0, "the IDE's `PORT` on 127.0.0.1 (default: a free one)")
	cmd.Flags().BoolVar(&fresh, "fresh", false, "bring it down and start over from a new copy (the old work stays on its branch)")
	cmd.Flags().StringVar(&opts.Tool, "tool", "", "the `TOOL` that run joins with (claude-code, codex, a custom tool; default: shell only)")
	addSessionFlags(cmd, opts)
	return cmd
}

// ideOptions are up's browser IDE flags.
type ideOptions struct {
	On   bool
	Port int
}

func (o ideOptions) validate(cmd *cobra.Command) error {
	if cmd.Flags().Changed("ide-port") && !o.On {
		return usageErrorf("--ide-port: needs --ide")
	}
	if o.Port < 0 || o.Port > 65535 {
		return usageErrorf("--ide-port %d: a port is 1-65535 (or 0 for a free one)", o.Port)
	}
	return nil
}

func runUp(ctx context.Context, opts *sessionOptions, name string, fresh bool, ide ideOptions) error {
	prof, s, wd, repo, err := opts.openRepo()
	if err != nil {
		return err
	}
	if name == "" {
		name = agentmachine.DefaultWorkspaceName(repo)
		if w, err := s.Dirs.FindWorkspace(repo, prof.Metadata.Name); err != nil {
			return err
		} else if w != nil {
			name = w.Name
		}
	}
	if err := agentmachine.CheckWorkspaceName(name); err != nil {
		return err
	}
	req := agentmachine.SessionRequest{Tool: opts.Tool, Repo: repo, Secrets: opts.Secrets, AllowProtected: opts.AllowProtected,
		WorkDir: wd, Direct: opts.Direct, Branch: opts.Branch, AllowHosts: opts.AllowHosts, Auth: opts.Auth, Workspace: name, IDE: ide.On}
	if opts.DryRun {
		plan, err := s.Plan(ctx, prof, req)
		return printPlan(opts, plan, err)
	}
	// The IDE's port is taken before anything starts: a port in use fails here, not after up.
	var listener net.Listener
	if ide.On {
		if listener, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ide.Port))); err != nil {
			return &agentmachine.InputError{Flag: "--ide-port", Err: err, Fix: "choose another port, or leave --ide-port out for a free one"}
		}
		defer listener.Close()
	}
	res, err := upOffering(ctx, s, prof, req, fresh, opts.offerBuild)
	if err != nil {
		return err
	}
	w := res.Workspace
	if res.Already {
		fmt.Fprintf(opts.IO.ErrOut, "Workspace %s is already up (container %.12s), and as planned.\n", w.Name, w.ContainerID)
	} else {
		fmt.Fprintf(opts.IO.ErrOut, "✓ Workspace %s is up (container %.12s) on %s.\n", w.Name, w.ContainerID, w.Repo)
	}
	fmt.Fprintf(opts.IO.ErrOut, "  join:   sourceosctl agent-machine exec --name %s -- COMMAND   (shell and run on %s join it too)\n  status: sourceosctl agent-machine status\n  down:   sourceosctl agent-machine down --name %s\n", w.Name, w.Repo, w.Name)
	if !ide.On {
		return nil
	}
	return serveIDE(ctx, opts, s, prof, w, listener)
}

// serveIDE serves the workspace's browser IDE until Ctrl-C; code-server's output goes to its
// log file (and to standard error with --verbose).
func serveIDE(ctx context.Context, opts *sessionOptions, s *agentmachine.Session, prof *profile.Profile, w *agentmachine.Workspace, l net.Listener) error {
	logPath := s.Dirs.IDELog(w.Name)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("the IDE's log: %w", err)
	}
	defer logFile.Close()
	var log io.Writer = logFile
	if s.Verbose {
		log = io.MultiWriter(logFile, opts.IO.ErrOut)
	}
	// The Podman bindings warn through logrus when a relay's browser end closes first.
	logrus.SetLevel(logrus.ErrorLevel)
	fmt.Fprintf(opts.IO.ErrOut, "Starting the browser IDE in workspace %s (code-server; its output: %s) …\n", w.Name, logPath)
	err = s.ServeIDE(ctx, prof, w, agentmachine.IDEServing{Listener: l, Log: log, Ready: func(url string) {
		fmt.Fprintf(opts.IO.ErrOut, "✓ IDE for workspace %s, on this host only — open:\n\n    %s\n\n  The address carries the workspace's token: do not share it. Ctrl-C stops serving; the workspace stays up.\n", w.Name, url)
	}})
	if ctx.Err() != nil && err == nil {
		fmt.Fprintf(opts.IO.ErrOut, "IDE stopped; workspace %s is still up (down --name %s stops it).\n", w.Name, w.Name)
	}
	return err
}

// workspaceRepo resolves the repository a workspace command names: --repo, else the
// profile's, else the working directory.
func workspaceRepo(s *agentmachine.Session, prof *profile.Profile, repo, wd string) (string, error) {
	if repo == "" {
		repo = prof.Spec.Workspace.Repo
	}
	if repo == "" {
		repo = "."
	}
	r, err := profile.ResolvePath(repo, s.Host.Home, wd)
	if err != nil {
		return "", &agentmachine.InputError{Flag: "--repo", Err: err}
	}
	return r, nil
}

// openWorkspace loads the profile and the session, and finds the workspace --name or --repo
// names: what exec, down and the SSH commands all start with.
func openWorkspace(f *Factory, g *GlobalOptions, name, repo string) (*profile.Profile, *agentmachine.Session, *agentmachine.Workspace, error) {
	prof, err := f.LoadProfile(g.Profile)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := f.Session(g)
	if err != nil {
		return nil, nil, nil, err
	}
	wd, _ := f.WorkDir()
	w, err := findWorkspace(s, prof, name, repo, wd)
	return prof, s, w, err
}

// findWorkspace is the workspace --name names, or else the one of the repository and profile.
func findWorkspace(s *agentmachine.Session, prof *profile.Profile, name, repo, wd string) (*agentmachine.Workspace, error) {
	if name != "" {
		w, found, err := s.Dirs.LoadWorkspace(name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, &agentmachine.InputError{Flag: "--name", Err: fmt.Errorf("there is no workspace %s", name), Fix: "sourceosctl agent-machine status lists them; up makes one"}
		}
		return w, nil
	}
	r, err := workspaceRepo(s, prof, repo, wd)
	if err != nil {
		return nil, err
	}
	w, err := s.Dirs.FindWorkspace(r, prof.Metadata.Name)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, &agentmachine.InputError{Err: fmt.Errorf("no workspace of %s with profile %s", r, prof.Metadata.Name),
			Fix: "sourceosctl agent-machine up --repo " + r}
	}
	return w, nil
}

func newExecCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var name, repo string
	cmd := &cobra.Command{
		Use:   "exec [--name NAME | --repo PATH] -- COMMAND [ARG...]",
		Short: "Run a command in a running workspace",
		Long: `Run COMMAND in the running workspace (made by up) of the repository, or the one --name
names. Before it starts, the workspace's container is inspected and compared with what up
created, and sourceos-helper checks it again from inside: a container changed behind
sourceosctl's back is refused (exit 3). The command's exit code becomes sourceosctl's; the
join leaves its own evidence bundle naming the workspace.`,
		Example: `  sourceosctl agent-machine exec --repo . -- go test ./...
  sourceosctl agent-machine exec --name app -- sh -c 'echo $SOURCEOS_AGENT_SESSION'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("name the command to run after --, e.g. exec -- make test")
			}
			prof, s, w, err := openWorkspace(f, g, name, repo)
			if err != nil {
				return err
			}
			_, err = s.Join(cmd.Context(), prof, w, agentmachine.SessionRequest{Tool: tool.Shell, Args: args})
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the workspace's `NAME`")
	cmd.Flags().StringVar(&repo, "repo", "", "the workspace's repository `PATH` (default: the profile's, else the working directory)")
	return cmd
}

func newDownCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var name, repo string
	cmd := &cobra.Command{
		Use:   "down [--name NAME | --repo PATH]",
		Short: "Stop a workspace; its work reaches its branch, its copy stays for the next up",
		Long: `Stop the workspace of the repository (or the one --name names): its container and its
egress gateway stop, the gateway's record of every connection goes into the down's
evidence bundle, and what the agent left in the workspace's copy comes back to your
repository as the workspace's branch (review it with diff, take it with merge). The copy
and the tools' state stay: up starts the workspace again where it was.`,
		Example: `  sourceosctl agent-machine down --repo .
  sourceosctl agent-machine down --name app`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			prof, s, w, err := openWorkspace(f, g, name, repo)
			if err != nil {
				return err
			}
			if !w.Running() {
				fmt.Fprintf(f.IO.ErrOut, "Workspace %s is down already.\n", w.Name)
				return nil
			}
			if _, err := s.Down(cmd.Context(), prof, w.Name); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.ErrOut, "✓ Workspace %s is down.\n", w.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the workspace's `NAME`")
	cmd.Flags().StringVar(&repo, "repo", "", "the workspace's repository `PATH` (default: the profile's, else the working directory)")
	return cmd
}

func newRmCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var yes, force bool
	cmd := &cobra.Command{
		Use:   "rm NAME [--yes]",
		Short: "Remove a workspace: its containers, gateway volume, copy and record",
		Long: `Remove the workspace NAME. A running one is brought down first, so its work reaches its
branch. Then its containers, its gateway's volume, its copy and its record are removed.

Never removed: your repository (and the workspace's branch in it), the evidence bundles,
and the tools' state volumes, which the profile's sessions share (state rm removes those).
Work the down could not bring back (its error says why) keeps the workspace unless --force.
Asks first on a terminal; elsewhere --yes is required.`,
		Example: `  sourceosctl agent-machine rm app
  sourceosctl agent-machine rm app --yes`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := agentmachine.CheckWorkspaceName(name); err != nil {
				return err
			}
			prof, err := f.LoadProfile(g.Profile)
			if err != nil {
				return err
			}
			s, err := f.Session(g)
			if err != nil {
				return err
			}
			w, found, err := s.Dirs.LoadWorkspace(name)
			if err != nil {
				return err
			}
			if !found {
				return &agentmachine.InputError{Err: fmt.Errorf("there is no workspace %s", name), Fix: "sourceosctl agent-machine status lists them"}
			}
			if !yes {
				if !f.IO.InTTY {
					return usageErrorf("removing workspace %s needs --yes when standard input is not a terminal", name)
				}
				fmt.Fprintf(f.IO.ErrOut, "Remove workspace %s of %s (its containers and copy; the branch and the evidence stay)? [y/N] ", name, w.Repo)
				answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					fmt.Fprintln(f.IO.ErrOut, "nothing removed")
					return nil
				}
			}
			if err := s.RemoveWorkspace(cmd.Context(), prof, name, force); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.Out, "removed workspace %s (%s and the evidence untouched)\n", name, w.Repo)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	cmd.Flags().BoolVar(&force, "force", false, "remove it even when its copy holds work that could not be brought back (that work is lost)")
	return cmd
}

// joinRefusal refuses the session flags a join cannot honour: the running workspace w keeps
// what its up gave it.
func joinRefusal(opts *sessionOptions, w *agentmachine.Workspace, repo string) error {
	for _, f := range []struct {
		flag string
		set  bool
	}{{"--secret", len(opts.Secrets) > 0}, {"--auth", len(opts.Auth) > 0}, {"--allow-host", len(opts.AllowHosts) > 0},
		{"--allow-protected", len(opts.AllowProtected) > 0}, {"--keep", opts.Keep}, {"--direct", opts.Direct}, {"--branch", opts.Branch != ""}} {
		if f.set {
			return usageErrorf("%s: workspace %s of %s is up and this command would join it, with what up gave it; bring it up again with %s (up --fresh), or down it to run a session", f.flag, w.Name, repo, f.flag)
		}
	}
	return nil
}

// upOffering brings the workspace up, and when its image is missing offers to build it
// (offer, nil: never) and tries once more.
func upOffering(ctx context.Context, s *agentmachine.Session, prof *profile.Profile, req agentmachine.SessionRequest, fresh bool,
	offer func(context.Context, error) (bool, error)) (*agentmachine.UpResult, error) {
	res, err := s.Up(ctx, prof, req, fresh)
	if offer != nil {
		if built, berr := offer(ctx, err); berr != nil {
			return nil, berr
		} else if built {
			res, err = s.Up(ctx, prof, req, fresh)
		}
	}
	if err != nil {
		return res, err
	}
	return res, s.Lifecycle(ctx, prof, res)
}

// openRepo loads the profile and the session and resolves the repository the command names
// (workspaceRepo): what up, test and serve start with.
func (o *sessionOptions) openRepo() (prof *profile.Profile, s *agentmachine.Session, wd, repo string, err error) {
	if prof, err = o.LoadProfile(o.Profile); err != nil {
		return nil, nil, "", "", err
	}
	if s, err = o.Session(); err != nil {
		return nil, nil, "", "", err
	}
	wd, _ = o.WorkDir()
	repo, err = workspaceRepo(s, prof, o.Repo, wd)
	return prof, s, wd, repo, err
}

// joinRunning joins the running workspace of the session's repository and profile, when
// there is one: joined is false otherwise (the session runs as usual).
func joinRunning(ctx context.Context, opts *sessionOptions, s *agentmachine.Session, prof *profile.Profile, wd string) (joined bool, err error) {
	repo, err := workspaceRepo(s, prof, opts.Repo, wd)
	if err != nil || (opts.Repo == "" && prof.Spec.Workspace.Repo == "") {
		return false, nil // the session reports a missing --repo
	}
	w, err := s.Dirs.FindWorkspace(repo, prof.Metadata.Name)
	if err != nil || w == nil || !w.Running() {
		return false, err
	}
	if err := joinRefusal(opts, w, repo); err != nil {
		return true, err
	}
	if opts.DryRun {
		fmt.Fprintf(opts.IO.Out, "dry run: would join workspace %s (container %.12s) and run %s there, checked again first\n", w.Name, w.ContainerID, cmp.Or(strings.Join(opts.Args, " "), opts.Tool))
		return true, nil
	}
	fmt.Fprintf(opts.IO.ErrOut, "joining workspace %s (container %.12s)\n", w.Name, w.ContainerID)
	_, err = s.Join(ctx, prof, w, agentmachine.SessionRequest{Tool: opts.Tool, Args: opts.Args, Repo: repo, Project: opts.project})
	return true, err
}

func newSSHProxyCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-proxy NAME",
		Short: "Speak SSH on standard input and output for a workspace (the ProxyCommand ssh-config writes)",
		Long: `Speak SSH on standard input and output for the running workspace NAME: the ProxyCommand of
the host alias ssh-config writes, so that ssh, sftp, scp and editors (VS Code Remote-SSH,
JetBrains Gateway, Zed, Neovim, Emacs TRAMP) reach the workspace with no sshd in the image
and no port published.

Each SSH channel becomes a join of the workspace, checked and recorded like exec: a shell or
a command (with a terminal and its window changes), sftp (an SFTP server run inside the
container, so paths resolve as the container sees them) and local port forwarding (ssh -L)
to ports on the container's loopback only. Only the workspace's own key (made at up) is
accepted; agent and remote forwarding, X11 and the client's environment are not passed on.
Messages and errors go to standard error; the evidence bundles are written as for exec.`,
		Example: `  ssh -o ProxyCommand='sourceosctl agent-machine ssh-proxy app' sourceos-app
  # normally through the entry ssh-config writes:
  sourceosctl agent-machine ssh-config app --write && ssh sourceos-app`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			prof, s, w, err := openWorkspace(f, g, args[0], "")
			if err != nil {
				return err
			}
			s.Quiet = true
			// The Podman bindings warn through logrus on standard error, which is the
			// editor's log here: a stream closing at the end of a command is no news.
			logrus.SetLevel(logrus.ErrorLevel)
			return s.ServeSSH(cmd.Context(), prof, w, agentmachine.StdioConn{Reader: f.IO.In, WriteCloser: writeCloser{f.IO.Out}})
		},
	}
	return cmd
}

// writeCloser closes its writer when it can (standard output: the SSH client sees the end).
type writeCloser struct {
	w interface{ Write([]byte) (int, error) }
}

func (c writeCloser) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c writeCloser) Close() error {
	if cl, ok := c.w.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

func newSSHConfigCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var write bool
	var config string
	cmd := &cobra.Command{
		Use:   "ssh-config NAME [--write]",
		Short: "Print (or with --write add to ~/.ssh/config) the SSH host entry of a workspace",
		Long: `Print the OpenSSH client entry of the workspace NAME: host alias sourceos-NAME, whose
ProxyCommand is this sourceosctl's ssh-proxy, with the workspace's own key and pinned host
key (made at up, kept until rm) and nothing forwarded. Nothing is written unless --write is
given: then the entry is added to ~/.ssh/config (or --config FILE) between marker comments,
replacing an earlier one for the same workspace; the rest of the file is left as it was.`,
		Example: `  sourceosctl agent-machine ssh-config app
  sourceosctl agent-machine ssh-config app --write
  ssh sourceos-app -- go test ./...
  code --remote ssh-remote+sourceos-app /workspace`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			prof, s, w, err := openWorkspace(f, g, args[0], "")
			if err != nil {
				return err
			}
			files := s.Dirs.WorkspaceSSH(w.Name)
			if _, err := os.Stat(files.Identity); err != nil {
				return &agentmachine.InputError{Err: fmt.Errorf("workspace %s has no SSH keys yet", w.Name), Fix: "sourceosctl agent-machine up --name " + w.Name}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			proxy := []string{self}
			if src := prof.Source; !strings.HasPrefix(src, "embedded:") {
				proxy = append(proxy, "--profile", src)
			}
			if g.Connection != "" {
				proxy = append(proxy, "--connection", g.Connection)
			}
			proxy = append(proxy, "agent-machine", "ssh-proxy", w.Name)
			entry := agentmachine.SSHConfig(files, proxy, "agent")
			if !write {
				_, err := fmt.Fprint(f.IO.Out, entry)
				return err
			}
			if config == "" {
				home, err := f.Home()
				if err != nil {
					return err
				}
				config = filepath.Join(home, ".ssh", "config")
			}
			if err := agentmachine.WriteSSHConfig(config, w.Name, entry); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.ErrOut, "✓ %s: host %s (ssh %s)\n", config, files.Alias, files.Alias)
			return nil
		},
	}
	cmd.Flags().BoolVar(&write, "write", false, "add the entry to ~/.ssh/config (replacing this workspace's earlier one)")
	cmd.Flags().StringVar(&config, "config", "", "the SSH configuration `FILE` --write changes (default ~/.ssh/config)")
	return cmd
}
