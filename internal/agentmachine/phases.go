package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/cause"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// gitTimeout bounds reading the repository's state: a hung git cannot hold a session back.
const gitTimeout = 30 * time.Second

// prepare makes sure the session can be recorded before anything starts — the signing key.
// What the record needs besides — the repository's state before the session, the host's
// tool versions, the evidence schema — is gathered meanwhile, off the session's critical
// path, and joined before the record is written.
func (r *sessionRun) prepare(ctx context.Context) (func(), error) {
	r.out.Started = r.Now().UTC()
	key, err := r.signingKey()
	if err != nil {
		return nil, err
	}
	r.key, r.prepared = key, true
	if h := r.plan.Helper; h != nil && h.Volume == "" {
		ref, err := r.Helper(r.Host.Arch, true)
		if err != nil {
			return nil, err
		}
		if ref != *h {
			return nil, fmt.Errorf("the container helper at %s is not the one planned (%s)", ref.Path, h.Digest)
		}
	}
	if sf := r.plan.SFTP; sf != nil && r.SFTP != nil && (r.ws == nil || r.ws.action == actionUp) {
		ref, err := r.SFTP(r.Host.Arch, true)
		if err != nil {
			return nil, err
		}
		if ref != *sf {
			return nil, fmt.Errorf("the SFTP server at %s is not the one planned (%s)", ref.Path, sf.Digest)
		}
	}
	r.event("session %s planned: %s, policy %s", r.plan.SessionID, r.plan.Container.Name, r.plan.PolicyHash)
	r.hostTools = make(chan hostTools, 1)
	go func() { r.hostTools <- r.gatherHostTools(context.WithoutCancel(ctx)) }()
	go evidence.PrepareSchema()
	r.linksDone = make(chan struct{})
	var undo func()
	switch c := r.plan.Workspace.Copy; {
	case r.ws != nil && (r.ws.action != actionUp || r.ws.ws.CopySession != ""):
		// A join or a down, or an up on the workspace's kept copy: the repository was read
		// when the copy was made (the first up's record), and the mounts were checked then.
		r.gitBefore = fingerprint.GitState{Reader: "git", Absent: "read when workspace " + r.ws.ws.Name + " was first brought up"}
		r.gitBeforeDone = make(chan struct{})
		close(r.gitBeforeDone)
		if r.ws.action != actionUp {
			close(r.linksDone)
			return nil, nil
		}
	case c != nil:
		r.prepareCopy(ctx, c)
		undo = r.watchRepository // the first phase's clean-up runs last
	default:
		r.gitBeforeDone = r.readGit(ctx, &r.gitBefore, nil)
	}
	go func() {
		defer close(r.linksDone)
		r.linkRefusals, r.linkErr = policy.HardLinks(ctx, r.plan.Decision, r.plan.policyHost)
	}()
	return undo, nil
}

// checkLinks joins the hard-link check started by prepare: a mount that holds a hard link to
// a protected file refuses the session before the tool starts.
func (r *sessionRun) checkLinks() error {
	<-r.linksDone
	if r.linksChecked { // a volume workspace checks before shipping, the run again
		return r.linksResult
	}
	r.linksChecked = true
	r.linksResult = r.linksVerdict()
	return r.linksResult
}

func (r *sessionRun) linksVerdict() error {
	if r.linkErr != nil {
		r.event("hard-link check failed: %v", r.linkErr)
		return fmt.Errorf("check the mounts for hard links: %w", r.linkErr)
	}
	if len(r.linkRefusals) > 0 {
		var reasons []string
		for _, f := range r.linkRefusals {
			reasons = append(reasons, f.Reason)
		}
		r.event("refused to start: %s", strings.Join(reasons, "; "))
		return &policy.RefusedError{Refusals: r.linkRefusals}
	}
	r.event("hard-link check: no mount holds a link to a protected file")
	return nil
}

// readGit reads the repository's state into st (and, when it is dirty and diff is not nil,
// its diff) in the background, bounded by gitTimeout whatever happens to ctx; the channel
// closes when it is done.
func (r *sessionRun) readGit(ctx context.Context, st *fingerprint.GitState, diff *[]byte) chan struct{} {
	return r.readGitWith(ctx, r.Git, st, diff)
}

// safeGit reads repositories without running anything from them (go-git), unless a test
// replaced the reader.
func (r *sessionRun) safeGit() GitReader {
	if _, real := r.Git.(fingerprint.Git); real {
		return fingerprint.Git{}
	}
	return r.Git
}

func (r *sessionRun) readGitWith(ctx context.Context, g GitReader, st *fingerprint.GitState, diff *[]byte) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gitTimeout)
		defer cancel()
		*st = g.State(gctx, r.plan.Repo)
		if diff != nil && st.Dirty {
			*diff = g.Diff(gctx, r.plan.Repo)
		}
	}()
	return done
}

// signingKey loads the evidence key, or creates it on first use.
func (r *sessionRun) signingKey() (*evidence.Key, error) {
	if ref, found, err := r.Dirs.ReadTPMKeyRef(); found || err != nil {
		var key *evidence.Key
		if err == nil {
			key, err = LoadTPMKey(ref)
		}
		if err != nil {
			return nil, &HintError{Err: fmt.Errorf("cannot sign this session's evidence with the TPM-held key, so it was not started: %w", err),
				Fix: "check that the TPM " + ref.Device + " is there and yours to use (doctor checks it), or move " + r.Dirs.TPMKeyPath() + " aside to sign with a file key"}
		}
		return key, nil
	}
	priv, pub := r.Dirs.SigningKeyPaths()
	key, err := evidence.LoadOrCreateKey(priv, pub, []byte(r.Getenv("SOURCEOSCTL_KEY_PASSWORD")))
	if err != nil {
		return nil, keyError(priv, err)
	}
	if key.Created {
		fmt.Fprintf(r.IO.ErrOut, "Created the evidence signing key %s (public key: %s)\n", priv, pub)
	} else if st, err := os.Stat(priv); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(r.IO.ErrOut, "! the evidence signing key %s can be read by others (mode %v): chmod 600 %s\n", priv, st.Mode().Perm(), priv)
	}
	return key, nil
}

// keyError is a signing key that cannot be used, with what to do.
func keyError(priv string, err error) error {
	return &HintError{Err: fmt.Errorf("cannot sign this session's evidence, so it was not started: %w", err),
		Fix: "check " + priv + " (mode 0600, readable by you), or move it away to have a new key created"}
}

// image makes sure the plan's image is present: a missing localhost/ image is built on this
// host, never pulled; a published one is pulled; a pinned digest must match.
func (r *sessionRun) image(ctx context.Context) (func(), error) {
	ref := r.plan.Image.Ref
	img, err := r.ensureImage(ctx, ref)
	r.out.Image = img
	if err == nil {
		err = checkIDEImage(r.plan, img)
	}
	if err != nil {
		r.event("image %s: %v", ref, err)
		return nil, err
	}
	r.event("image %s ready: id %s", ref, img.ID)
	return nil, nil
}

func (r *sessionRun) ensureImage(ctx context.Context, ref string) (container.Image, error) {
	img, found, err := r.engine.Image(ctx, ref)
	if err != nil {
		return img, err
	}
	if !found && IsLocalRef(ref) {
		return img, missingLocalImage(r.plan, ref)
	}
	if !found {
		fmt.Fprintf(r.IO.ErrOut, "Pulling %s …\n", ref)
		if err := r.engine.Pull(ctx, ref, r.IO.ErrOut); err != nil {
			if ctx.Err() != nil {
				return img, err
			}
			return img, &MissingError{Component: "image " + ref, Detail: fmt.Sprintf("not present locally and the pull failed: %v", err),
				Fix: "sourceosctl agent-machine image pull (tries the profile's spec.image.sources)"}
		}
		if img, found, err = r.engine.Image(ctx, ref); err != nil || !found {
			return img, fmt.Errorf("image %s: pulled but not found afterwards: %v", ref, err)
		}
	}
	return img, checkDigest(r.plan, ref, img)
}

// missingLocalImage is a localhost/ image that is not here: it is built, never pulled.
func missingLocalImage(pl *Plan, ref string) error {
	fix, ok := BuildCommand(ref)
	switch {
	case pl.IDE != nil:
		fix = ideBuildHint(ref)
	case !ok:
		fix = BuildImageCommand
	}
	if pl.IDE == nil {
		fix += " (or name a published image in spec.image)"
	}
	return &MissingError{Component: "image " + ref, Detail: "not present; localhost/ images are built on this host, never pulled", Fix: fix}
}

// checkDigest refuses an image other than the one the profile pins.
func checkDigest(pl *Plan, ref string, img container.Image) error {
	if want := pl.Image.Digest; want != "" && img.Digest != want && !hasRepoDigest(img.RepoDigests, want) {
		return &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "image " + ref, Rule: RuleImageDigest,
			Reason: fmt.Sprintf("the profile pins %s but the local image has %s", want, orDash(img.Digest)),
			Fix:    "fetch the pinned image (sourceosctl agent-machine image pull), or update spec.image.digest",
		}}}
	}
	return nil
}

// IsLocalRef reports whether ref names an image built on this host (localhost/…), which no
// registry serves.
func IsLocalRef(ref string) bool { return strings.HasPrefix(ref, "localhost/") }

// BuildImageCommand builds the default workspace image.
const BuildImageCommand = "sourceosctl agent-machine image build"

// BuildArgs are the image build options that make ref, when ref is one image build names
// (:latest, :ide, a stack tag such as :go-1.19_node-18, with _ide): its stacks (go@1.19) and
// whether it is the IDE variant; ok is false for any other image.
func BuildArgs(ref string) (stacks []string, ide, ok bool) {
	tag, ours := strings.CutPrefix(ref, image.WorkspaceRepo+":")
	if !ours || strings.Contains(tag, "@") {
		return nil, false, false
	}
	ide = tag == "ide" || strings.HasSuffix(tag, "_ide")
	if tag == "latest" || tag == "ide" {
		return nil, ide, true
	}
	for _, s := range strings.Split(strings.TrimSuffix(tag, "_ide"), "_") {
		i := strings.LastIndex(s, "-")
		if i <= 0 {
			return nil, false, false // a tag of the user's own (image build --tag)
		}
		stacks = append(stacks, s[:i]+"@"+s[i+1:])
	}
	if _, err := image.DefaultCatalog().Resolve(stacks); err != nil {
		return nil, false, false // not stacks this build knows
	}
	return stacks, ide, true
}

// BuildCommand is the image build command that makes ref (BuildArgs).
func BuildCommand(ref string) (hint string, ok bool) {
	stacks, ide, ok := BuildArgs(ref)
	if !ok {
		return "", false
	}
	cmd := BuildImageCommand
	for _, s := range stacks {
		cmd += " --stack " + s
	}
	if ide {
		cmd += " --ide"
	}
	return cmd, true
}

func hasRepoDigest(repoDigests []string, digest string) bool {
	for _, rd := range repoDigests {
		if strings.HasSuffix(rd, "@"+digest) {
			return true
		}
	}
	return false
}

// secrets reads each admitted secret's value at the last moment and hands it to Podman as an
// ephemeral secret; the clean-up removes every one created, however the session ends.
func (r *sessionRun) secrets(ctx context.Context) (func(), error) {
	undo := func() {
		for _, n := range r.madeSecrets {
			if err := r.engine.RemoveSecret(ctx, n); err != nil {
				fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
			}
		}
	}
	for _, src := range r.plan.SecretSources {
		value, err := r.secretValue(ctx, src)
		if err != nil {
			r.event("secrets: %v", err)
			return undo, err
		}
		if len(src.Inject) > 0 {
			// Never a Podman secret: the container gets a placeholder, the gateway the value.
			ph, err := egress.Placeholder(string(value))
			if err != nil {
				return undo, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("from %s: %v", src.Source, err), Fix: "check the secret's source holds the whole key"}
			}
			r.injected = append(r.injected, egress.SecretValue{Name: src.Name, Placeholder: ph, Value: string(value)})
			continue
		}
		name := secretName(r.plan.SessionID, src.Name)
		if err := r.engine.CreateSecret(ctx, name, value); err != nil {
			// It may exist although the request failed (a lost response): never leave a
			// secret's value behind.
			_ = r.engine.RemoveSecret(ctx, name)
			r.event("secrets: %v", err)
			return undo, err
		}
		r.madeSecrets = append(r.madeSecrets, name)
	}
	if r.plan.Decision.GitIdentity {
		id, err := r.readGitIdentity(ctx)
		if err != nil {
			return undo, err
		}
		r.gitIdentity = id
	}
	if len(r.madeSecrets) > 0 {
		r.event("ephemeral secrets created: %d", len(r.madeSecrets))
	}
	if len(r.injected) > 0 {
		r.event("secrets for the gateway to inject: %d (the container gets placeholders)", len(r.injected))
	}
	return undo, nil
}

// secretCommandTimeout bounds a secret's fromCommand (gh auth token).
const secretCommandTimeout = 30 * time.Second

func (r *sessionRun) secretValue(ctx context.Context, src policy.SecretDecision) ([]byte, error) {
	kind, from, _ := strings.Cut(src.Source, ":")
	var value []byte
	switch kind {
	case "file":
		b, err := r.ReadFile(from)
		if err != nil {
			return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("cannot read its source file %s: %v", from, cause.Root(err))}
		}
		value = []byte(strings.TrimRight(string(b), "\r\n"))
	case "command":
		if r.checkOnly { // a dry run runs no command: it checks the program is there
			if len(src.Command) == 0 || r.LookPath == nil {
				return nil, nil
			}
			if _, err := r.LookPath(src.Command[0]); err != nil {
				return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("its source command %s failed: %v", from, err),
					Fix: "install it, or name another source for the secret"}
			}
			return nil, nil
		}
		out, err := r.hostCommand(ctx, src.Command)
		if err != nil {
			return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("its source command %s failed: %v", from, err),
				Fix: "run it yourself to see why (for gh: gh auth login)"}
		}
		value = []byte(strings.TrimSpace(string(out)))
	default:
		value = []byte(r.Getenv(from))
	}
	if len(value) == 0 {
		fix := "set it first, e.g. export " + from + "=…"
		if kind != "env" {
			fix = "check " + from + " gives the value"
		}
		return nil, &InputError{Flag: "--secret " + src.Name, Err: fmt.Errorf("its source %s is empty or unset", src.Source), Fix: fix}
	}
	return value, nil
}

// hostCommand runs a program on the host (no shell), bounded in time, for its standard output.
func (r *sessionRun) hostCommand(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 || r.Runner == nil || r.LookPath == nil {
		return nil, errors.New("no command runner")
	}
	bin, err := r.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, secretCommandTimeout)
	defer cancel()
	return r.Runner.Run(ctx, bin, argv[1:]...)
}

// readGitIdentity reads the host's global git user.name and user.email (--auth git): the
// identity only, never a credential; either may be unset.
func (r *sessionRun) readGitIdentity(ctx context.Context) (map[string]string, error) {
	id := map[string]string{}
	for key, vars := range map[string][]string{"user.name": {"GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"}, "user.email": {"GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"}} {
		// From /, so that no repository's configuration is read (the global one only).
		out, _ := r.hostCommand(ctx, []string{"git", "-C", "/", "config", "--global", "--get", key})
		if v := strings.TrimSpace(string(out)); v != "" {
			for _, k := range vars {
				id[k] = v
			}
		}
	}
	if len(id) == 0 {
		return nil, &InputError{Flag: "--auth git", Err: errors.New("the host's git has no global user.name or user.email"),
			Fix: "git config --global user.name 'Your Name'; git config --global user.email you@example.com"}
	}
	return id, nil
}

// create creates the container from the plan, with the values of the pass-through variables;
// the clean-up removes it unless the session keeps it (and a weakened one is never kept).
func (r *sessionRun) create(ctx context.Context) (func(), error) {
	r.spec = r.plan.Container
	r.spec.Env = copyEnv(r.spec.Env)
	for _, name := range r.plan.PassEnv {
		if v := r.Getenv(name); v != "" {
			r.spec.Env[name] = v
		}
	}
	for _, v := range r.injected {
		for _, src := range r.plan.SecretSources {
			if src.Name == v.Name {
				r.spec.Env[src.EnvVar] = v.Placeholder
			}
		}
	}
	for k, v := range r.gitIdentity {
		r.spec.Env[k] = v
	}
	box := &containerRun{engine: r.engine, spec: r.spec, image: r.out.Image}
	if h := r.plan.Helper; h != nil {
		box.nonce = newNonce()
		box.spec = withHelper(r.spec, *h, r.out.Image, box.nonce, r.plan.Egress.helperArgs()...)
		r.spec = box.spec
	}
	if err := r.ensureStateVolume(ctx); err != nil {
		r.event("tool state: %v", err)
		return nil, err
	}
	if err := box.create(ctx); err != nil {
		r.event("create failed: %v", err)
		return nil, err
	}
	r.box = box
	r.out.ContainerID = box.id
	r.event("container %s created", short(box.id))
	return func() {
		if r.plan.Keep && !r.weakened || r.ws != nil && r.ws.kept {
			return
		}
		if err := box.remove(ctx); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
		}
	}, nil
}

// weakenedFix is what to do about a server whose own configuration changed the container.
const weakenedFix = "the Podman service's containers.conf (CONTAINERS_CONF, /etc/containers/, ~/.config/containers/) " +
	"sets what the plan did not ask for: remove that setting, or use another connection (--connection)"

// compare inspects the created container and refuses to start it unless everything the
// server applied is what the plan asked for.
func (r *sessionRun) compare(ctx context.Context) (func(), error) {
	diffs, err := r.box.compare(ctx)
	if err != nil {
		return nil, err
	}
	r.out.Inspect = r.box.inspect
	r.out.Checks.Inspect, r.out.Checks.InspectDifferences = "as-planned", diffs
	if len(diffs) > 0 {
		r.out.Checks.Inspect = "differs"
		r.weakened = true // never kept, whatever --keep says
		r.event("refused to start: the server weakened the spec: %s", strings.Join(diffs, "; "))
		return nil, &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "container " + r.spec.Name, Rule: RuleServerWeakened,
			Reason: "the Podman service did not apply the plan: " + strings.Join(diffs, "; "),
			Fix:    weakenedFix + "; the container was removed before it started",
		}}}
	}
	r.event("inspected: every security setting as planned")
	return nil, nil
}

// run attaches the terminal, starts the tool and waits for it; a signal stops the container
// gracefully and the tool's own exit code is kept. The repository's state before the session
// must have been read before the tool can change it.
func (r *sessionRun) run(ctx context.Context) (func(), error) {
	if err := r.checkLinks(); err != nil {
		return nil, err
	}
	if err := r.checkCopy(); err != nil {
		return nil, err
	}
	<-r.gitBeforeDone
	r.event("repository state before the session: commit %s", orDash(r.gitBefore.Commit))
	res, err := r.box.run(ctx, r.IO.In, r.IO.Out, r.IO.ErrOut, r.StopTimeout, func() { r.out.Ran = true; r.event("started") })
	if res.StopErr != nil {
		fmt.Fprintf(r.IO.ErrOut, "! %v\n", res.StopErr)
		r.event("graceful stop failed: %v", res.StopErr)
	}
	if err != nil {
		r.event("failed: %v", err)
		return nil, err
	}
	if res.Checked {
		r.out.Checks.Inside = "passed"
		r.event("checked from inside by sourceos-helper: as planned")
	}
	if len(res.Refused) > 0 {
		r.out.Checks.Inside, r.out.Checks.InsideDifferences = "refused", res.Refused
		r.out.Ran = false // the helper refused before the tool started
		r.event("refused from inside before the tool started: %s", strings.Join(res.Refused, "; "))
		return nil, &policy.RefusedError{Refusals: []policy.Refusal{{
			Subject: "container " + r.spec.Name, Rule: RuleServerWeakened,
			Reason: "checked from inside, the container is not what was planned: " + strings.Join(res.Refused, "; "),
			Fix:    weakenedFix + "; the container was removed and the tool never started",
		}}}
	}
	r.out.ExitCode = res.Code
	var ge *GatewayError
	if res.Interrupted && errors.As(context.Cause(ctx), &ge) {
		r.event("stopped: %v; exit code %d", ge, res.Code)
		return nil, ge
	}
	if res.Interrupted {
		r.out.Interrupted, r.out.Cause = true, causeOf(ctx)
		r.event("interrupted by %s; exit code %d", r.out.Cause, res.Code)
		return nil, nil
	}
	r.event("exited with code %d", res.Code)
	return nil, nil
}

// collect gathers what the record needs once the tool has finished, however it finished:
// the tool's version measured in the image, the repository's state and diff afterwards (read
// while the clean-ups run; record joins it), and the host's tool versions.
func (r *sessionRun) collect(ctx context.Context) (func(), error) {
	r.measureTool(ctx)
	egressErr := r.collectEgress()
	<-r.gitBeforeDone // when an earlier phase failed, run never waited for it
	if g := r.plan.gitGuard; g != nil {
		r.checkGitAfter(g, writableRoots(r.plan), true)
	}
	switch {
	case r.plan.Workspace.Copy != nil:
		if r.out.Ran {
			r.collectCopy(ctx)
		}
		// The session could not write the user's repository (it was the copy's read-only
		// lower layer, checked from inside), so it is not read again: on a large repository
		// that is a git status for nothing. What the session did is the branch.
		r.gitAfter = fingerprint.GitState{Reader: r.gitBefore.Reader, Absent: "not read again: the session worked on its own copy, over the repository mounted read-only; its work is the branch in git.workspace.result"}
		r.gitAfterDone = make(chan struct{})
		close(r.gitAfterDone)
	case r.plan.Workspace.Mode == WorkspaceVolume:
		r.collectVolume(ctx)
		r.gitAfter = fingerprint.GitState{Reader: r.gitBefore.Reader, Absent: "not read again: the session worked on a volume of the remote service, never on this repository; its work is the patch (workspace.patch)"}
		r.gitAfterDone = make(chan struct{})
		close(r.gitAfterDone)
	case r.plan.Workspace.Mode == WorkspaceDirect:
		// The session could write the work tree: read it with a reader that runs nothing.
		r.gitAfterDone = r.readGitWith(ctx, r.safeGit(), &r.gitAfter, &r.diff)
	default:
		r.gitAfterDone = r.readGit(ctx, &r.gitAfter, &r.diff)
	}
	r.host = <-r.hostTools
	return nil, egressErr
}

// measureTool records the tool's version and binary digest, or why there are none. A
// failure is recorded as the reason, never raised: it must not fail a session that ran.
func (r *sessionRun) measureTool(ctx context.Context) {
	switch {
	case r.plan.Tool.Name == tool.Shell:
		r.toolAbsent = "a shell session runs the image's shell; no tool version applies"
	case r.out.Image.ID == "":
		r.toolAbsent = "the image was not available, so the tool could not be measured"
	case ctx.Err() != nil:
		r.toolAbsent = "the session was interrupted before the tool could be measured"
	default:
		facts, err := r.probeTool(ctx)
		if err != nil {
			r.toolAbsent = "measuring the tool failed: " + firstLine(err.Error())
			return
		}
		r.tool = facts
	}
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
