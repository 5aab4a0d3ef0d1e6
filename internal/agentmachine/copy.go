package agentmachine

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/collect"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/textsafe"
)

// Where the collector's container sees the copy's parts, and the collector itself.
const (
	collectProgram = "/run/sourceos-collect"
	collectUpper   = "/sourceos-collect/upper"
	collectBaseGit = "/sourceos-collect/base-git"
	collectOut     = "/sourceos-collect/out"
)

// collectTimeout bounds collecting a copy's work.
const collectTimeout = 10 * time.Minute

// collectMemory is the least memory the collector gets, whatever the session's limit: it
// holds the new files' blobs while it writes the bundle (each up to 100 MiB), and a session
// limited to 256 MiB must still be able to bring back the large file its agent wrote.
const collectMemory = 1 << 30

// prepareCopy starts making the session's copy beside the next phases (it is joined before
// the tool starts, in run). Its layers exist at once: the container is created with them.
func (r *sessionRun) prepareCopy(ctx context.Context, c *repocopy.Copy) {
	for _, d := range []string{c.Upper(), c.Work(), c.Out()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			r.copyErr = err
		}
	}
	r.gitBeforeDone = make(chan struct{})
	if r.copyErr != nil {
		close(r.gitBeforeDone)
		return
	}
	go func() {
		defer close(r.gitBeforeDone)
		var scan *repocopy.Scan
		r.scanRead = "in full"
		if r.Watcher != nil {
			// Its own deadline: a watcher that does not answer leaves the full read all its time.
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), watcherTimeout)
			s, changed, err := r.Watcher.Scan(qctx, c.Repo)
			cancel()
			if err == nil {
				scan = &s
				r.scanRead = fmt.Sprintf("from its watcher, %s read again", plural(len(changed), "path"))
			} else {
				// The watcher ended (or never ran): read in full, and start one at the end.
				r.scanRead, r.startWatcher = fmt.Sprintf("in full (%v)", err), true
			}
		}
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gitTimeout)
		defer cancel()
		r.gitBefore, r.copyErr = repocopy.Prepare(gctx, r.gitrun(), c, r.plan.Workspace.Include, scan, r.Now())
	}()
}

// watcherTimeout bounds the question to the repository's watcher (it reads at most 1,000
// paths again); past it the session reads the repository in full.
const watcherTimeout = 10 * time.Second

// watchRepository starts the repository's watcher once the session is over (it reads the
// repository in full as it starts, which the session must not wait for nor compete with),
// when the session found none.
func (r *sessionRun) watchRepository() {
	<-r.gitBeforeDone
	if !r.startWatcher || r.copyErr != nil {
		return
	}
	if err := r.Watcher.Start(r.plan.Workspace.Copy.Repo); err != nil {
		r.event("the repository's watcher could not be started: %v", err)
	}
}

// checkCopy is prepareCopy's result, joined before the tool starts.
func (r *sessionRun) checkCopy() error {
	if r.plan.Workspace.Copy == nil {
		return nil
	}
	<-r.gitBeforeDone
	if r.copyErr != nil {
		r.event("the copy could not be made: %v", r.copyErr)
		return copyError(fmt.Errorf("make the session's copy of %s: %w", r.plan.Repo, r.copyErr))
	}
	c := r.plan.Workspace.Copy
	what := "clean"
	if c.Snapshot != "" {
		what = "uncommitted changes in " + short(c.Snapshot)
	}
	r.event("copy ready at %s: branch %s from %s (%s), %d paths hidden (ignored, or repositories of their own); the repository read %s", c.Dir, c.Branch, short(c.Head), what, len(c.Masked), r.scanRead)
	return nil
}

// collectCopy brings the agent's work back as the session's branch: nothing when the copy
// is as it was made; otherwise the collector runs in a short-lived container and its bundle
// is fetched into the user's repository. A failure keeps the copy and says where it is.
func (r *sessionRun) collectCopy(ctx context.Context) {
	c := r.plan.Workspace.Copy
	if c == nil || r.copyErr != nil || r.gitBeforeDone == nil {
		return
	}
	fail := func(err error) {
		r.copyCollectErr = fmt.Errorf("the agent's work is kept in %s (as the agent left it: do not run git there, or open it in an editor with git integration — it would run what the agent planted), but could not be brought back: %w", c.Dir, err)
		r.event("collect failed: %v", err)
		c.CollectError = err.Error()
		_ = c.Save()
	}
	changed, err := c.Changed()
	if err != nil {
		fail(err)
		return
	}
	if !changed {
		if err := c.Unchanged(); err != nil {
			fail(err)
			return
		}
		r.event("the session left its copy as it was made: no branch")
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), collectTimeout)
	defer cancel()
	m, err := r.runCollector(cctx, c)
	if err != nil {
		fail(err)
		return
	}
	if len(m.Skipped) > 0 {
		// The names are the agent's: escaped, they cannot drive the terminal.
		skipped := make([]string, len(m.Skipped))
		for i, s := range m.Skipped {
			skipped[i] = textsafe.String(s)
		}
		r.event("not brought back: %s", strings.Join(skipped, "; "))
		fmt.Fprintf(r.IO.ErrOut, "! not brought back to the branch (the copy keeps them in %s, as the agent left them: look with ls or a viewer, never git or an editor's git, which would run what it planted):\n", c.Upper())
		for _, s := range skipped {
			fmt.Fprintf(r.IO.ErrOut, "    %s\n", s)
		}
	}
	if m.Head == c.Base {
		if err := c.Unchanged(); err != nil {
			fail(err)
		}
		r.event("the session's changes were all ignored files: no branch")
		return
	}
	patch, err := c.Import(cctx, r.gitrun(), repocopy.Manifest{Head: m.Head, Commits: m.Commits, Leftover: m.Leftover})
	if err != nil {
		fail(err)
		return
	}
	r.patch = patch
	r.event("branch %s: %s (%s)", c.Branch, plural(len(c.Result.Commits), "commit"), orDash(c.Result.Stat))
}

// collectorImage is the collector's image: an empty root filesystem made on this service the
// first time (the helper is mounted, as in every session), so collecting depends on nothing
// the workspace image holds and creating its container copies nothing (vfs storage copies an
// image's whole root filesystem per container).
func (r *sessionRun) collectorImage(ctx context.Context) (container.Image, error) {
	ref := "localhost/sourceos/collector:" + short(strings.TrimPrefix(r.plan.Helper.Digest, "sha256:"))
	if img, found, err := r.engine.Image(ctx, ref); err == nil && found {
		return img, nil
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	for _, d := range []string{"etc", "home", "home/agent", "run", "tmp", "proc", "sys", "dev"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode})
	}
	_ = tw.Close()
	if _, err := r.engine.Import(ctx, &tarball, ref, []string{"ENV PATH=/usr/bin:/bin", "LABEL " + LabelManaged + "=true"}); err != nil {
		return container.Image{}, fmt.Errorf("make the collector's image: %w", err)
	}
	img, found, err := r.engine.Image(ctx, ref)
	if err == nil && !found {
		err = fmt.Errorf("the collector's image %s is missing after its import", ref)
	}
	return img, err
}

// runCollector runs sourceos-collect (checked first by the helper) in a container made like the session's — the
// same user, limits and copy — from the collector's empty image, with the upper layer and
// the user's .git read-only and an output directory, no network, no secrets, no terminal.
func (r *sessionRun) runCollector(ctx context.Context, c *repocopy.Copy) (collect.Manifest, error) {
	var m collect.Manifest
	req := collect.Request{Workspace: r.spec.WorkDir, Upper: collectUpper, BaseGit: collectBaseGit, Out: collectOut,
		Session: r.plan.SessionID, Branch: c.Branch, Base: c.Base, Date: r.Now().UTC()}
	if o := r.plan.Container.Overlays; len(o) > 0 {
		req.Workspace = o[0].Target
	}
	raw, _ := json.Marshal(req)
	if r.Collector == nil {
		return m, errors.New("this sourceosctl was built without its collector: build it with make build")
	}
	program, err := r.Collector(r.Host.Arch)
	if err != nil {
		return m, err
	}
	img, err := r.collectorImage(ctx)
	if err != nil {
		return m, err
	}
	spec := r.plan.Container
	spec.Image = img.ID
	spec.Name += "-collect"
	spec.Command = []string{collectProgram, base64.RawURLEncoding.EncodeToString(raw)}
	spec.Secrets, spec.Stdin, spec.TTY = nil, false, false
	spec.Network = "none"
	if spec.Limits.MemoryBytes > 0 && spec.Limits.MemoryBytes < collectMemory {
		spec.Limits.MemoryBytes = collectMemory
	}
	spec.Labels = copyLabels(spec.Labels, LabelTool, "collect")
	spec.Mounts = []container.Mount{
		{Source: program.Path, Target: collectProgram, ReadOnly: true},
		{Source: c.Upper(), Target: collectUpper, ReadOnly: true},
		{Source: c.GitDir, Target: collectBaseGit, ReadOnly: true},
		{Source: c.Out(), Target: collectOut},
	}
	if err := os.Remove(filepath.Join(c.Out(), collect.BundleFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return m, err
	}
	box := &containerRun{engine: r.engine, spec: spec, image: img}
	if h := r.plan.Helper; h != nil {
		box.nonce = newNonce()
		box.spec = withHelper(spec, *h, img, box.nonce)
	}
	var out bytes.Buffer
	res, diffs, err := box.once(ctx, nil, &out, &out, time.Second)
	switch {
	case err != nil:
		return m, err
	case len(diffs) > 0:
		return m, fmt.Errorf("the server weakened the collector's container: %s", strings.Join(diffs, "; "))
	case len(res.Refused) > 0:
		return m, fmt.Errorf("the collector's container, checked from inside, is not what was planned: %s", strings.Join(res.Refused, "; "))
	case res.Code == 137 && strings.TrimSpace(out.String()) == "":
		return m, fmt.Errorf("the collector was killed (exit 137, most likely out of memory: its limit is %d MiB; large files in the copy?)", spec.Limits.MemoryBytes>>20)
	case res.Code != 0:
		return m, fmt.Errorf("the collector exited %d: %s", res.Code, strings.TrimSpace(lastLines(out.String(), 5)))
	}
	b, err := os.ReadFile(filepath.Join(c.Out(), collect.ManifestFile))
	if err != nil {
		return m, fmt.Errorf("the collector left no manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("the collector's manifest: %w", err)
	}
	return m, nil
}

func copyLabels(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for key, val := range labels {
		out[key] = val
	}
	out[k] = v
	return out
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// reportCopy tells the user where the agent's work is, once the session is recorded: the
// branch and what to do with it, or that nothing changed (and the copy is gone).
func (r *sessionRun) reportCopy() {
	c := r.plan.Workspace.Copy
	switch {
	case c == nil:
		return
	case r.copyErr != nil:
		_ = c.Remove() // what was made of it holds nothing of the agent's
	case r.copyCollectErr != nil:
		fmt.Fprintf(r.IO.ErrOut, "! %v\n", r.copyCollectErr)
	case c.Result == nil:
		// the tool never started: the copy holds nothing of the agent's
		if err := c.Remove(); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
		}
	case !c.Result.Changed:
		if err := c.Remove(); err != nil {
			fmt.Fprintf(r.IO.ErrOut, "! %v\n", err)
		}
		fmt.Fprintf(r.IO.ErrOut, "The session changed nothing in %s: no branch was made.\n", c.Repo)
	default:
		id := r.plan.SessionID
		fmt.Fprintf(r.IO.ErrOut, "The agent's work is on branch %s of %s: %s, %s.\n  review:  sourceosctl agent-machine diff %s\n  merge:   sourceosctl agent-machine merge %s [--squash]\n  discard: sourceosctl agent-machine discard %s\n",
			c.Branch, c.Repo, plural(len(c.Result.Commits), "commit"), orDash(c.Result.Stat), id, id, id)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
