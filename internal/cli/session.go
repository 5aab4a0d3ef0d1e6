package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/kube"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// sessionOptions are shared by shell and run: both start one governed session.
type sessionOptions struct {
	IO          *IOStreams
	LoadProfile func(path string) (*profile.Profile, error)
	Session     func() (*agentmachine.Session, error)
	WorkDir     func() (string, error)

	Profile        string
	Tool           string // tool.Shell for the shell command
	Repo           string
	Args           []string
	Secrets        []string
	AllowProtected []string
	AllowHosts     []string
	Auth           []string
	DryRun         bool
	Output         string
	Keep           bool
	Direct         bool
	Branch         string
	// KubeKind and KubeWorkspace shape -o kube's objects.
	KubeKind      string
	KubeWorkspace string
	// toolFlag: the tool came from --tool (run), not from the command (shell).
	toolFlag bool
	// project is the project command Args runs (test, serve), for the plan and the evidence.
	project *evidence.Project
	// offerBuild offers to build an image found missing (offerBuild); nil: never.
	offerBuild func(context.Context, error) (bool, error)
}

func newSessionOptions(f *Factory, g *GlobalOptions) *sessionOptions {
	return &sessionOptions{
		IO: f.IO, LoadProfile: f.LoadProfile, WorkDir: f.WorkDir,
		Session: func() (*agentmachine.Session, error) { return f.Session(g) },
	}
}

func addSessionFlags(cmd *cobra.Command, opts *sessionOptions) {
	fl := cmd.Flags()
	fl.StringVar(&opts.Repo, "repo", "", "repository `PATH` to mount as the workspace (default: the profile's spec.workspace.repo)")
	fl.StringArrayVar(&opts.Secrets, "secret", nil, "hand the declared secret `NAME` to the tool (repeatable; the profile must allow it)")
	fl.StringSliceVar(&opts.Auth, "auth", nil, "hand the tool credentials the profile consents to: `NAMES` among "+strings.Join(policy.AuthNames(), ", ")+" (comma-separated; keys are injected by the egress gateway, never put in the container; git is the host's user.name and user.email)")
	fl.StringArrayVar(&opts.AllowProtected, "allow-protected", nil, "confirm mounting a protected `PATH` that the profile marks allowProtected (repeatable)")
	fl.StringArrayVar(&opts.AllowHosts, "allow-host", nil, "let this session reach `HOST[:PORT]` through the egress gateway (also *.suffix, an address or CIDR; repeatable; recorded as a command-line rule; needs spec.network: gateway)")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the plan (mounts, user, limits, command) and change nothing")
	fl.BoolVar(&opts.Keep, "keep", false, "keep the container after the session instead of removing it")
	fl.BoolVar(&opts.Direct, "direct", false, "work on the live work tree (its .git read-only) instead of the session's own copy and branch")
	fl.StringVar(&opts.Branch, "branch", "", "name of the session's branch `NAME` (default agent/SESSION-ID)")
	addOutputFlag(cmd, &opts.Output, sessionFormats...)
	fl.StringVar(&opts.KubeKind, "kube-kind", kube.KindPod, "with -o kube: export a `KIND`: pod, or sandbox (agent-sandbox's agents.x-k8s.io/v1alpha1 Sandbox)")
	fl.StringVar(&opts.KubeWorkspace, "kube-workspace", "", "with -o kube: the repository's volume in the cluster, `pvc:NAME` (default pvc:"+kube.DefaultClaim+")")
}

// sessionFormats are the forms a session's plan prints in.
var sessionFormats = []string{outTable, outJSON, outPodman, outKube}

func newShellCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := newSessionOptions(f, g)
	opts.Tool = tool.Shell
	cmd := &cobra.Command{
		Use:   "shell [--repo PATH] [-- COMMAND [ARG...]]",
		Short: "Open a shell (or run a command) in a governed container on a repository",
		Long: `Open an interactive shell in a governed container with the repository mounted as the
workspace, or run COMMAND there with its output streamed and its exit code returned.

The session works on its own copy of the repository, on its own branch (agent/SESSION-ID
or --branch), starting from your HEAD and uncommitted changes; your work tree and .git are
never written. Afterwards the branch is in your repository: review it with diff, take it
with merge, or drop it with discard. --direct works on the live work tree instead.

The container sees only the repository and the profile's allowlisted mounts, runs as your
uid with all capabilities dropped, no-new-privileges, a read-only root and no network
unless the profile grants one. With spec.network: gateway (the default profile's) it has
no network but the session's egress gateway, which lets out only the allowed hosts,
answers others with 403 and the reason, and records every connection in the evidence.
Ctrl-C stops the container; it is removed afterwards.

When a workspace of the repository and profile is up (see up), shell joins it instead:
the command runs in the workspace's container, checked again first.`,
		Example: `  sourceosctl agent-machine shell --repo ~/dev/app
  sourceosctl agent-machine shell --repo . -- git log -1
  sourceosctl agent-machine shell --repo . --allow-host registry.npmjs.org -- npm ci
  sourceosctl agent-machine shell --repo . --dry-run -o podman`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Profile, opts.Args = g.Profile, args
			if err := opts.validate(); err != nil {
				return err
			}
			return runSession(cmd.Context(), opts)
		},
	}
	addSessionFlags(cmd, opts)
	return cmd
}

func newRunCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := newSessionOptions(f, g)
	opts.toolFlag = true
	cmd := &cobra.Command{
		Use:   "run --tool NAME [--repo PATH] [-- ARG...]",
		Short: "Run an enabled tool (claude-code, codex or a custom tool) in a governed container",
		Long: `Run a tool that the profile enables, inside a governed container on the repository.
Built-in tools are claude-code (the 'claude' CLI) and codex; custom tools come from the
profile's spec.tools.custom. A tool receives a secret only when the profile declares it,
the tool lists it, and the command line repeats it with --secret NAME (or --auth NAME). A
secret the profile declares with inject never enters the container: the tool gets a
placeholder, and the egress gateway puts the value into request headers to the secret's
hosts only. --auth git gives a tool with gitIdentity: true your git user.name and
user.email.

claude-code and codex keep their login, settings and history in a volume of the profile's
across sessions (see 'state list'); a login kept there is readable by the tool.

Both built-in tools bring their own Linux sandbox, which cannot start inside an
unprivileged container; the built-in definitions switch it off so that this container is
the boundary, and the plan says so.

With spec.network: gateway, a built-in tool reaches its own API and sign-in hosts (listed by
'image stacks', with where each comes from) and what the profile and --allow-host add;
nothing else.

The tool's exit code becomes sourceosctl's exit code. When a workspace of the repository and
profile is up for this tool (see up), run joins it instead of creating a container.`,
		Example: `  sourceosctl agent-machine run --tool claude-code --repo ~/dev/app --auth anthropic,git
  sourceosctl agent-machine run --tool codex --repo . -- --version
  sourceosctl agent-machine run --tool claude-code --repo . --allow-host '*.githubusercontent.com'
  sourceosctl agent-machine run --tool claude-code --repo . --dry-run -o json
  sourceosctl agent-machine run --tool codex --repo . --dry-run -o kube --kube-kind sandbox --kube-workspace pvc:app`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Profile, opts.Args = g.Profile, args
			if err := opts.validate(); err != nil {
				return err
			}
			return runSession(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Tool, "tool", "", "tool `NAME` to run: claude-code, codex, or a custom tool from the profile")
	addSessionFlags(cmd, opts)
	return cmd
}

// validate checks the options alone, before anything is read or connected.
func (o *sessionOptions) validate() error {
	switch {
	case o.Tool == "":
		return usageErrorf("--tool is required: name an enabled tool such as claude-code or codex")
	case o.Tool == tool.Shell && o.toolFlag:
		return usageErrorf("use the shell command for a shell: sourceosctl agent-machine shell")
	}
	if err := validateOutput(o.Output, sessionFormats...); err != nil {
		return err
	}
	if o.Output != outTable && !o.DryRun {
		return usageErrorf("--output %s describes a plan: add --dry-run", o.Output)
	}
	if o.Output != outKube && (o.KubeKind != kube.KindPod || o.KubeWorkspace != "") {
		return usageErrorf("--kube-kind and --kube-workspace shape the Kubernetes export: add --dry-run -o kube")
	}
	if o.KubeKind != kube.KindPod && o.KubeKind != kube.KindSandbox {
		return usageErrorf("--kube-kind %q: use pod or sandbox", o.KubeKind)
	}
	if _, err := kube.ClaimName(o.KubeWorkspace); err != nil {
		return usageErrorf("%v", err)
	}
	if o.Direct && o.Branch != "" {
		return usageErrorf("--branch names the branch of the session's copy: leave out --direct or --branch")
	}
	for _, a := range o.Auth {
		if !slices.Contains(policy.AuthNames(), a) {
			return usageErrorf("--auth %s: not a known credential; use %s", a, strings.Join(policy.AuthNames(), ", "))
		}
	}
	if o.Keep && len(o.Secrets) > 0 {
		return usageErrorf("--keep cannot be combined with --secret: a kept container would keep the secret's value readable through podman inspect")
	}
	return nil
}

func runSession(ctx context.Context, opts *sessionOptions) error {
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	s, err := opts.Session()
	if err != nil {
		return err
	}
	return runSessionWith(ctx, opts, prof, s)
}

// runSessionWith joins the repository's running workspace, or runs a session (or its dry run).
func runSessionWith(ctx context.Context, opts *sessionOptions, prof *profile.Profile, s *agentmachine.Session) error {
	wd, _ := opts.WorkDir()
	req := agentmachine.SessionRequest{Tool: opts.Tool, Repo: opts.Repo, Args: opts.Args, Secrets: opts.Secrets,
		AllowProtected: opts.AllowProtected, Keep: opts.Keep, WorkDir: wd, Direct: opts.Direct, Branch: opts.Branch, AllowHosts: opts.AllowHosts, Auth: opts.Auth,
		Project: opts.project, Export: opts.Output == outKube}
	if joined, err := joinRunning(ctx, opts, s, prof, wd); joined || err != nil {
		return err
	}
	if opts.DryRun {
		plan, err := s.Plan(ctx, prof, req)
		return printPlan(opts, plan, err)
	}
	_, err := s.Run(ctx, prof, req)
	return err
}

// printPlan prints a dry run's plan in the chosen format; a refused plan prints its
// decisions and exits with the refusal, as the real run would.
func printPlan(opts *sessionOptions, plan *agentmachine.Plan, planErr error) error {
	var refused *policy.RefusedError
	if planErr != nil && (plan == nil || !errors.As(planErr, &refused)) {
		return planErr
	}
	out := opts.IO.Out
	var err error
	switch {
	case opts.Output == outJSON:
		err = writeJSON(out, plan)
	case planErr != nil:
		err = agentmachine.WriteRefusals(out, plan)
	case opts.Output == outPodman:
		_, err = fmt.Fprintln(out, agentmachine.ShellQuote(agentmachine.PodmanArgs(plan)))
	case opts.Output == outKube:
		var x *kube.Export
		if x, err = kube.Objects(plan, kube.Options{Kind: opts.KubeKind, Workspace: opts.KubeWorkspace}); err == nil {
			err = kube.Write(out, x)
		}
	default:
		err = agentmachine.WriteTable(out, plan)
	}
	if err != nil {
		return err
	}
	if planErr != nil {
		return planErr
	}
	fmt.Fprintf(opts.IO.ErrOut, "dry run: nothing was created (session id and container name are new on each run)\n")
	return nil
}
