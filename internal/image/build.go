package image

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/images"
	"github.com/sourceos/sourceosctl/internal/container"
)

// Image names the build produces. Each stage is tagged only when it is complete; the final tag
// moves only when the whole build succeeded.
const (
	DefaultRef = "localhost/sourceos/agent-workspace:latest"
	rootfsRepo = "localhost/sourceos/agent-rootfs"
	baseRepo   = "localhost/sourceos/agent-base"
	// InputsLabel holds the hash of everything a stage was built from; a stage whose tag
	// carries the same hash is reused.
	InputsLabel = "dev.sourceos.build.inputs"
	// debootstrap's package list beyond minbase: enough for the base stage's apt-get over https.
	debootstrapInclude = "ca-certificates,passwd"
	// rootMode is the mode of the image's / (see debootstrap).
	rootMode = "0755"
)

// BuildEngine is what a build needs from Podman beyond fetching.
type BuildEngine interface {
	Engine
	Import(ctx context.Context, r io.Reader, ref string, changes []string) (string, error)
	Build(ctx context.Context, b container.Build) (string, error)
	RemoveImage(ctx context.Context, ref string) error
}

// BuildRequest says what to build.
type BuildRequest struct {
	Ref    string // final tag; default DefaultRef, or :<stacks> with stacks
	Base   string // an image to start from instead of debootstrap
	Rootfs string // a root filesystem (directory or tar) to import instead of debootstrap
	// Dockerfile is a repository's own Dockerfile (a devcontainer's build.dockerfile), built
	// in Context with BuildArgs as the first stage instead of debootstrap.
	Dockerfile string
	Context    string
	BuildArgs  map[string]string
	Mirror     string // Debian mirror for debootstrap; default from the host's apt sources
	Stacks     []Selected
	// IDE adds the browser IDE stage (code-server, catalog-pinned) on top: the result is
	// IDERef of what it would be without.
	IDE     bool
	CACerts []string // PEM files added to the image's trust store
	Catalog *Catalog
	Force   bool // rebuild every stage even when its inputs are unchanged
	Arch    string
}

// Step is one stage of a build plan.
type Step struct {
	Name    string   `json:"name"`
	Tag     string   `json:"tag"`
	Inputs  string   `json:"inputs"`  // hash of the stage's inputs, also its label
	Action  string   `json:"action"`  // reuse, build (plan); reused, built (result)
	Command []string `json:"command"` // the equivalent commands, for humans and --dry-run
	ID      string   `json:"id,omitempty"`

	run func(ctx context.Context, b *Builder, st *Step) (string, error)
}

// BuildPlan is the ordered stages; the last one's tag is the result.
type BuildPlan struct {
	Ref   string  `json:"ref"`
	From  string  `json:"from"` // where the file system comes from, for the manifest`
	Steps []*Step `json:"steps"`
}

// Builder plans and runs builds.
type Builder struct {
	Engine       BuildEngine
	ManifestPath string
	WorkDir      string // scratch space for debootstrap and build contexts
	// Out receives a line per stage; Log, when set, receives what the stages' programs print
	// (debootstrap, apt, npm) instead of Out, indented.
	Out io.Writer
	Log io.Writer
	// Stage, when set, shows a stage's progress: it is called as the stage begins and the
	// function it returns as it ends. By default a line is written to Out.
	Stage    func(label string) (done func(error))
	Geteuid  func() int
	LookPath func(string) (string, error)
	ReadFile func(string) ([]byte, error) // apt sources, CA files
	Now      func() time.Time
}

func (b *Builder) now() time.Time {
	if b.Now == nil {
		return time.Now().UTC()
	}
	return b.Now().UTC()
}

// Plan decides every stage and whether it can be reused. It only reads: the image store
// (inspect) and the host's apt sources.
func (b *Builder) Plan(ctx context.Context, req BuildRequest) (*BuildPlan, error) {
	if req.Catalog == nil {
		req.Catalog = DefaultCatalog()
	}
	if btoi(req.Base != "")+btoi(req.Rootfs != "")+btoi(req.Dockerfile != "") > 1 {
		return nil, &InputError{Msg: "--base, --rootfs and --dockerfile each name where the image starts", Fix: "give one of them"}
	}
	cas, err := b.readCACerts(req.CACerts)
	if err != nil {
		return nil, err
	}
	// without is the image without the IDE: the tools, or the stacks on them; ref the result.
	without := StackRef(req.Stacks)
	ref := req.Ref
	switch {
	case ref == "" && req.IDE:
		ref = IDERef(without)
	case ref == "":
		ref = without
	case !req.IDE:
		without = ref // --tag names the last stage
	}
	suite, arch := req.Catalog.Suite, req.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	plan := &BuildPlan{Ref: ref}

	// Stage 1: where the file system comes from.
	var first *Step
	switch {
	case req.Base != "":
		img, present, err := b.Engine.Image(ctx, req.Base)
		if err != nil {
			return nil, err
		}
		plan.From = "base " + req.Base
		first = &Step{Name: "base image", Tag: req.Base, Action: "pull", Inputs: "pull:" + req.Base}
		if present {
			first.Action, first.ID, first.Inputs = "reuse", img.ID, img.ID
		} else {
			first.Command = []string{"podman pull " + req.Base}
			first.run = func(ctx context.Context, b *Builder, st *Step) (string, error) {
				if err := b.Engine.PullFrom(ctx, req.Base, true, b.output()); err != nil {
					return "", err
				}
				img, _, err := b.Engine.Image(ctx, req.Base)
				st.Inputs = img.ID
				return img.ID, err
			}
		}
	case req.Dockerfile != "":
		plan.From = "dockerfile " + req.Dockerfile
		if first, err = planDockerfile(req); err != nil {
			return nil, err
		}
	case req.Rootfs != "":
		plan.From = "rootfs " + req.Rootfs
		first, err = b.planRootfs(req.Rootfs, suite)
		if err != nil {
			return nil, err
		}
	default:
		mirror := req.Mirror
		if mirror == "" {
			mirror = DebianMirror(b.ReadFile)
		}
		plan.From = "debootstrap " + suite + " " + mirror
		first = b.planDebootstrap(suite, mirror, arch)
	}
	plan.Steps = append(plan.Steps, first)

	// Stage 2: the base (packages, user); stage 3: the tools; stage 4: stacks.
	parent := first
	add := func(name, file, tag string, args map[string]string, extra []byte) {
		inputs := hashOf(parent.Inputs, file, args, extra)
		st := &Step{Name: name, Tag: tag, Inputs: inputs}
		p := parent
		shown := copyArgs(args)
		shown["BASE"] = p.Tag
		st.Command = []string{buildCommand(file, shown, tag, len(cas))}
		st.run = func(ctx context.Context, b *Builder, st *Step) (string, error) {
			args := copyArgs(args)
			args["BASE"] = p.Tag
			return b.buildStage(ctx, file, st, args, cas)
		}
		plan.Steps = append(plan.Steps, st)
		parent = st
	}
	add("base", "base/Containerfile", baseRepo+":"+suite, nil, joinCerts(cas))
	// The tool layer is the default image; stacks build on top of it.
	add("tools", "tools/Containerfile", DefaultRef, req.Catalog.buildArgs(), nil)
	if len(req.Stacks) > 0 {
		var pkgs, checks []string
		for _, s := range req.Stacks {
			pkgs = append(pkgs, s.Packages...)
			checks = append(checks, s.Check)
		}
		add("stacks", "stacks/Containerfile", without, map[string]string{"PACKAGES": strings.Join(pkgs, " "), "CHECK": strings.Join(checks, " && ")}, nil)
	}
	if req.IDE {
		// The IDE goes last, so an image with stacks and the IDE shares every stage but this
		// one with the image without it.
		add("ide", "ide/Containerfile", ref, req.Catalog.IDE.buildArgs(), nil)
	} else if len(req.Stacks) == 0 && ref != DefaultRef {
		plan.Steps[len(plan.Steps)-1].Tag = ref
	}

	// Decide reuse: a stage is reused when its tag carries the same inputs and nothing before
	// it is rebuilt.
	rebuild := req.Force
	for _, st := range plan.Steps {
		switch st.Action {
		case "reuse": // a --base image already present
			continue
		case "pull", "build": // a --base image to pull, a directory to re-import
			rebuild = true
			continue
		}
		if !rebuild && b.sameInputs(ctx, st) {
			st.Action = "reuse"
			continue
		}
		st.Action, rebuild = "build", true
	}
	return plan, nil
}

// IDELabel is on an image with the browser IDE (image build --ide): code-server's version.
const IDELabel = "dev.sourceos.ide.code-server.version"

// IDERef names the IDE variant of a workspace image image build made: :latest becomes :ide,
// :go-1.19 becomes :go-1.19_ide. Other images are returned as they are: they must carry the
// IDE themselves (IDELabel).
func IDERef(ref string) string {
	if strings.Contains(ref, "@") {
		return ref // pinned by digest: no variant of it exists
	}
	repo, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	if repo != WorkspaceRepo || strings.HasSuffix(tag, "_ide") || tag == "ide" {
		return ref
	}
	if tag == "latest" {
		return repo + ":ide"
	}
	return repo + ":" + tag + "_ide"
}

// WorkspaceRepo is the repository of the images image build makes.
const WorkspaceRepo = "localhost/sourceos/agent-workspace"

// StackRef names the image image build makes with stacks (none: the default image).
func StackRef(stacks []Selected) string {
	if len(stacks) == 0 {
		return DefaultRef
	}
	var tags []string
	for _, s := range stacks {
		tags = append(tags, s.Tag())
	}
	return WorkspaceRepo + ":" + strings.Join(tags, "_")
}

func (b *Builder) sameInputs(ctx context.Context, st *Step) bool {
	img, present, err := b.Engine.Image(ctx, st.Tag)
	if err == nil && present && img.Labels[InputsLabel] == st.Inputs {
		st.ID = img.ID
		return true
	}
	return false
}

// Run executes a plan: each stage not reused is built under a temporary name and renamed to
// its tag only when it succeeded, so a failed build never leaves a half-built image under a
// name a session would use. The final image is recorded in the manifest.
func (b *Builder) Run(ctx context.Context, plan *BuildPlan, version string) (*Entry, error) {
	for i, st := range plan.Steps {
		done := b.stage(fmt.Sprintf("[%d/%d] %s: %s %s", i+1, len(plan.Steps), st.Name, st.Action, st.Tag))
		if st.Action == "reuse" {
			done(nil)
			continue
		}
		id, err := st.run(ctx, b, st)
		done(err)
		if err != nil {
			return nil, fmt.Errorf("%s stage: %w", st.Name, err)
		}
		st.ID, st.Action = id, "built"
	}
	last := plan.Steps[len(plan.Steps)-1]
	img, present, err := b.Engine.Image(ctx, last.Tag)
	if err != nil || !present {
		return nil, fmt.Errorf("image %s: not found after the build: %v", last.Tag, err)
	}
	e := Entry{Ref: last.Tag, ID: img.ID, Digest: img.Digest, Version: version,
		Source: Origin{Kind: KindBuild, Location: plan.From, Digest: "sha256:" + last.Inputs}}
	e.Fetched = b.now()
	if err := Record(b.ManifestPath, e); err != nil {
		return nil, err
	}
	return &e, nil
}

func (b *Builder) stage(label string) func(error) {
	if b.Stage != nil {
		return b.Stage(label)
	}
	fmt.Fprintf(b.Out, "==> %s\n", label)
	return func(error) {}
}

// output is where the stages' programs write.
func (b *Builder) output() io.Writer {
	if b.Log != nil {
		return b.Log
	}
	return prefixLines(b.Out, "    ")
}

// buildStage writes the build context (the Containerfile and ca/) and builds it under a
// temporary tag, then renames.
func (b *Builder) buildStage(ctx context.Context, file string, st *Step, args map[string]string, cas map[string][]byte) (string, error) {
	dir, err := os.MkdirTemp(b.WorkDir, "context-")
	if err != nil {
		return "", fmt.Errorf("build context: %w", err)
	}
	defer os.RemoveAll(dir)
	data, err := images.Files.ReadFile(file)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), data, 0o644); err != nil {
		return "", err
	}
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o755); err != nil {
		return "", err
	}
	for name, pemData := range cas {
		if err := os.WriteFile(filepath.Join(dir, "ca", name), pemData, 0o644); err != nil {
			return "", err
		}
	}
	tmp := tempTag()
	id, err := b.Engine.Build(ctx, container.Build{ContextDir: dir, Containerfile: "Containerfile", Tag: tmp,
		Args: args, Labels: map[string]string{InputsLabel: st.Inputs}, Out: b.output()})
	if err != nil {
		b.discard(tmp)
		return "", err
	}
	return id, b.rename(ctx, tmp, st.Tag)
}

// planDockerfile is the first stage of a build from a repository's Dockerfile: built every
// time (its context is the repository's, which no input hash here covers), then the base,
// tools and stacks stages go on top as they do on --base.
func planDockerfile(req BuildRequest) (*Step, error) {
	data, err := os.ReadFile(req.Dockerfile)
	if err != nil {
		return nil, &InputError{Msg: "--dockerfile: " + err.Error(), Fix: "give the Dockerfile's path (a devcontainer's build.dockerfile)"}
	}
	dir := req.Context
	if dir == "" {
		dir = filepath.Dir(req.Dockerfile)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &InputError{Msg: fmt.Sprintf("--context %s is not a directory", dir), Fix: "give the build's context directory"}
	}
	rel, err := filepath.Rel(dir, req.Dockerfile)
	if err != nil {
		return nil, &InputError{Msg: err.Error()}
	}
	inputs := hashOf("dockerfile in "+dir, req.Dockerfile, req.BuildArgs, data)
	tag := "localhost/sourceos/dockerfile-base:" + inputs[:12]
	shown := []string{"podman", "build", "-f", req.Dockerfile}
	keys := make([]string, 0, len(req.BuildArgs))
	for k := range req.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		shown = append(shown, "--build-arg", k+"="+req.BuildArgs[k])
	}
	st := &Step{Name: "dockerfile", Tag: tag, Inputs: inputs, Action: "build", Command: []string{quoteAll(append(shown, "-t", tag, dir))}}
	st.run = func(ctx context.Context, b *Builder, st *Step) (string, error) {
		tmp := tempTag()
		id, err := b.Engine.Build(ctx, container.Build{ContextDir: dir, Containerfile: rel, Tag: tmp, Args: req.BuildArgs,
			Labels: map[string]string{InputsLabel: st.Inputs}, Out: b.output()})
		if err != nil {
			b.discard(tmp)
			return "", err
		}
		return id, b.rename(ctx, tmp, st.Tag)
	}
	return st, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rename moves a finished image from its temporary name to its tag.
func (b *Builder) rename(ctx context.Context, tmp, tag string) error {
	if err := b.Engine.Tag(ctx, tmp, tag); err != nil {
		b.discard(tmp)
		return err
	}
	return b.Engine.Untag(context.WithoutCancel(ctx), tmp)
}

// discard removes a temporary image, even when the build was interrupted.
func (b *Builder) discard(tmp string) {
	_ = b.Engine.RemoveImage(context.Background(), tmp)
}

func tempTag() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return "localhost/sourceos/build-tmp:" + hex.EncodeToString(r[:])
}

func (b *Builder) planDebootstrap(suite, mirror, arch string) *Step {
	// rootMode is part of the inputs since images made with a private root directory (0700,
	// which rootless storage keeps and no non-root user can traverse) must be rebuilt.
	inputs := hashOf("debootstrap", suite, map[string]string{"mirror": mirror, "variant": "minbase", "include": debootstrapInclude, "arch": arch, "rootMode": rootMode}, nil)
	tag := rootfsRepo + ":" + suite
	st := &Step{Name: "root filesystem (debootstrap)", Tag: tag, Inputs: inputs,
		Command: []string{
			fmt.Sprintf("debootstrap --variant=minbase --include=%s %s ROOTFS %s", debootstrapInclude, suite, mirror),
			fmt.Sprintf("tar --numeric-owner -C ROOTFS -c . | podman import --change 'LABEL %s=%s' - %s", InputsLabel, inputs, tag),
		}}
	st.run = func(ctx context.Context, b *Builder, st *Step) (string, error) {
		return b.debootstrap(ctx, suite, mirror, st)
	}
	return st
}

func (b *Builder) planRootfs(path, suite string) (*Step, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &InputError{Msg: fmt.Sprintf("--rootfs: %v", err), Fix: "give a directory made by debootstrap, or a tar of one"}
	}
	if err := checkRootMode(path, fi); err != nil {
		return nil, err
	}
	tag := rootfsRepo + ":" + suite
	st := &Step{Name: "root filesystem (" + path + ")", Tag: tag}
	if fi.IsDir() {
		// A directory's content is hashed as the tar we import.
		st.Command = []string{fmt.Sprintf("tar --sort=name --numeric-owner -C %s -c . | podman import - %s", path, tag)}
		st.Inputs = "dir:" + path
		st.Action = "build" // directories are always re-imported
	} else {
		sum, err := FileSHA256(path)
		if err != nil {
			return nil, &InputError{Msg: fmt.Sprintf("--rootfs: %v", err), Fix: "give a readable tar file"}
		}
		st.Inputs = hashOf("rootfs", sum, nil, nil)
		st.Command = []string{fmt.Sprintf("podman import --change 'LABEL %s=%s' %s %s", InputsLabel, st.Inputs, path, tag)}
	}
	st.run = func(ctx context.Context, b *Builder, st *Step) (string, error) {
		if fi.IsDir() {
			return b.importDir(ctx, path, st)
		}
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		return b.importTar(ctx, f, st)
	}
	return st, nil
}

// checkRootMode refuses a root filesystem whose top directory others cannot enter: it becomes
// the image's /, and rootless storage keeps its mode, so no session user could reach anything.
// For a tar, the top directory is its "./" entry, when it has one.
func checkRootMode(path string, fi fs.FileInfo) error {
	mode := fi.Mode().Perm()
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return &InputError{Msg: fmt.Sprintf("--rootfs: %v", err), Fix: "give a readable tar file"}
		}
		defer f.Close()
		h, err := tar.NewReader(f).Next()
		if err != nil {
			return &InputError{Msg: fmt.Sprintf("--rootfs %s: not a tar archive: %v", path, err), Fix: "give a tar of the root filesystem: tar --numeric-owner -C ROOTFS -cf rootfs.tar ."}
		}
		if name := strings.TrimSuffix(h.Name, "/"); name != "." && name != "" {
			return nil
		}
		mode = fs.FileMode(h.Mode).Perm()
	}
	if mode&0o055 != 0o055 {
		return &InputError{Msg: fmt.Sprintf("--rootfs %s: its top directory has mode %v; it becomes the image's /, which every user in the container must be able to enter", path, mode),
			Fix: "chmod 755 the root filesystem's directory (and tar it again)"}
	}
	return nil
}

// debootstrap makes a minbase root filesystem from the mirror and imports it.
func (b *Builder) debootstrap(ctx context.Context, suite, mirror string, st *Step) (string, error) {
	if b.Geteuid() != 0 {
		return "", &InputError{Msg: "debootstrap needs root, and this command runs as an unprivileged user",
			Fix: fmt.Sprintf("start from a registry image (--base docker.io/library/debian:%s-slim), or make the root filesystem as root and import it: sudo debootstrap --variant=minbase --include=%s %s /tmp/rootfs %s && sudo tar --numeric-owner -C /tmp/rootfs -cf /tmp/rootfs.tar . && sourceosctl agent-machine image build --rootfs /tmp/rootfs.tar", suite, debootstrapInclude, suite, mirror)}
	}
	if _, err := b.LookPath("debootstrap"); err != nil {
		return "", &MissingToolError{Tool: "debootstrap", Fix: "apt-get install debootstrap (or start from a registry image with --base)"}
	}
	dir, err := os.MkdirTemp(b.WorkDir, "rootfs-")
	if err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	defer os.RemoveAll(dir)
	// The directory becomes the image's /: MkdirTemp made it private, which rootless storage
	// would keep, leaving / closed to every user but root inside the container.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+debootstrapInclude, suite, dir, mirror)
	out := b.output()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("debootstrap %s from %s failed (%v); its log is above", suite, mirror, err)
	}
	return b.importDir(ctx, dir, st)
}

func (b *Builder) importDir(ctx context.Context, dir string, st *Step) (string, error) {
	cmd := exec.CommandContext(ctx, "tar", "--sort=name", "--numeric-owner", "-C", dir, "-c", ".")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("tar %s: %w", dir, err)
	}
	id, importErr := b.importTar(ctx, pipe, st)
	waitErr := cmd.Wait()
	if importErr != nil {
		return "", importErr
	}
	if waitErr != nil {
		b.discard(st.Tag)
		return "", fmt.Errorf("tar %s: %v: %s", dir, waitErr, strings.TrimSpace(stderr.String()))
	}
	return id, nil
}

func (b *Builder) importTar(ctx context.Context, r io.Reader, st *Step) (string, error) {
	tmp := tempTag()
	fmt.Fprintf(b.output(), "importing the root filesystem as %s\n", st.Tag)
	id, err := b.Engine.Import(ctx, r, tmp, []string{fmt.Sprintf("LABEL %s=%s", InputsLabel, st.Inputs), "CMD [\"/bin/bash\"]"})
	if err != nil {
		b.discard(tmp)
		return "", err
	}
	return id, b.rename(ctx, tmp, st.Tag)
}

// MissingToolError is a host program the build needs (exit code 4).
type MissingToolError struct {
	Tool string
	Fix  string
}

func (e *MissingToolError) Error() string { return e.Tool + " is not installed" }

// Hint is the command that installs it.
func (e *MissingToolError) Hint() string { return e.Fix }

// readCACerts checks each file holds PEM certificates and returns them by file name.
func (b *Builder) readCACerts(paths []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i, p := range paths {
		data, err := b.ReadFile(p)
		if err != nil {
			return nil, &InputError{Msg: fmt.Sprintf("--ca-cert: %v", err), Fix: "give a readable PEM file"}
		}
		rest, n := data, 0
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				return nil, &InputError{Msg: fmt.Sprintf("--ca-cert %s: holds a %s block; only certificates belong in a trust store", p, blk.Type), Fix: "give the CA certificate, never a private key"}
			}
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				return nil, &InputError{Msg: fmt.Sprintf("--ca-cert %s: certificate %d: %v", p, n+1, err), Fix: "give a PEM file of X.509 CA certificates"}
			}
			n++
		}
		if n == 0 {
			return nil, &InputError{Msg: fmt.Sprintf("--ca-cert %s: no PEM certificate found", p), Fix: "give a PEM file (-----BEGIN CERTIFICATE-----)"}
		}
		out[fmt.Sprintf("%02d-%s.crt", i, strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)))] = data
	}
	return out, nil
}

func joinCerts(cas map[string][]byte) []byte {
	names := make([]string, 0, len(cas))
	for n := range cas {
		names = append(names, n)
	}
	sort.Strings(names)
	var all []byte
	for _, n := range names {
		all = append(all, n...)
		all = append(all, cas[n]...)
	}
	return all
}

// hashOf is the stage's inputs hash: its parent's hash, its Containerfile, its arguments and
// any extra content (CA certificates).
func hashOf(parent, file string, args map[string]string, extra []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "parent %s\n", parent)
	if data, err := images.Files.ReadFile(file); err == nil {
		fmt.Fprintf(h, "file %s %d\n", file, len(data))
		h.Write(data)
	} else {
		fmt.Fprintf(h, "step %s\n", file)
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "arg %s=%s\n", k, args[k])
	}
	fmt.Fprintf(h, "extra %d\n", len(extra))
	h.Write(extra)
	return hex.EncodeToString(h.Sum(nil))
}

func buildCommand(file string, args map[string]string, tag string, certs int) string {
	parts := []string{"podman build -f images/" + file}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, "--build-arg "+shellQuote(k+"="+args[k]))
	}
	parts = append(parts, "--label "+InputsLabel+"=<inputs>", "-t "+tag)
	if certs > 0 {
		parts = append(parts, fmt.Sprintf("(context ca/ holds the %d --ca-cert file(s))", certs))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r == '=' || r == '.' || r == '-' || r == '_' || r == '/' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func copyArgs(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// DebianMirror finds the Debian mirror the host's apt uses (deb822 .sources files first, then
// sources.list), falling back to deb.debian.org.
func DebianMirror(readFile func(string) ([]byte, error)) string {
	const fallback = "http://deb.debian.org/debian"
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(append(files, "/etc/apt/sources.list"), lists...)
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(data)); m != "" {
			return m
		}
	}
	return fallback
}

// mirrorIn returns the first http(s) URI of a Debian archive (not security, not updates) in
// an apt sources file of either format.
func mirrorIn(text string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var uris []string
		switch {
		case strings.HasPrefix(line, "URIs:"):
			uris = strings.Fields(strings.TrimPrefix(line, "URIs:"))
		case strings.HasPrefix(line, "deb "):
			f := strings.Fields(line)
			for _, x := range f[1:] {
				if !strings.HasPrefix(x, "[") && !strings.HasSuffix(x, "]") {
					uris = []string{x}
					break
				}
			}
		}
		for _, u := range uris {
			if (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && !strings.Contains(u, "security") && strings.Contains(u, "debian") {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

// prefixLines indents a stream line by line, so build output reads as part of its stage.
func prefixLines(w io.Writer, prefix string) io.Writer {
	return &lineWriter{w: w, prefix: prefix, start: true}
}

type lineWriter struct {
	w      io.Writer
	prefix string
	start  bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	var buf []byte
	for _, c := range p {
		if l.start {
			buf = append(buf, l.prefix...)
			l.start = false
		}
		buf = append(buf, c)
		if c == '\n' {
			l.start = true
		}
	}
	if _, err := l.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
