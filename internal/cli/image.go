package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

func newImageCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, fetch, update and list workspace images",
		Long: `Workspace images hold the tools a session runs: the default image
(localhost/sourceos/agent-workspace:latest) has git, bash, Node.js, claude and codex on a small
Debian, and runs as the non-root user agent.

  build   builds the default image here: debootstrap from your apt mirror (no container
          registry needed) or --base IMAGE, then the pinned tools, then optional --stack
          runtimes from the catalog
  pull    fetches the profile's spec.image.ref from its sources (registries, checksummed
          archives), in the profile's order
  update  fetches again only when a source's digest changed
  list    shows what was fetched or built, and whether it is still present

What was fetched is recorded in a manifest under the data directory
($XDG_DATA_HOME/sourceos/agent-machine/images/manifest.json on Linux).`,
		Example: `  sudo sourceosctl agent-machine image build
  sourceosctl agent-machine image build --base docker.io/library/debian:bookworm-slim --stack go
  sourceosctl agent-machine image pull --profile team.yaml
  sourceosctl agent-machine image update --profile team.yaml
  sourceosctl agent-machine image list -o json`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newImageBuildCmd(f, g), newImagePullCmd(f, g, false), newImagePullCmd(f, g, true),
		newImageListCmd(f, g), newImageStacksCmd(f))
	return cmd
}

// interrupted turns a cancelled command into the signal's exit code.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
			return cause
		}
	}
	return err
}

// engineFor connects to the Podman service a command's profile uses.
func (f *Factory) engineFor(g *GlobalOptions) func(ctx context.Context, p *profile.Profile) (Engine, error) {
	return func(ctx context.Context, p *profile.Profile) (Engine, error) {
		e, _, err := f.Connect(ctx, g.Connection, agentmachine.MachineOf(p))
		return e, err
	}
}

func (f *Factory) imageDirs() (manifest, work, downloads string, err error) {
	dirs, err := f.Dirs()
	if err != nil {
		return "", "", "", err
	}
	base := filepath.Join(dirs.Data, "images")
	return image.ManifestPath(dirs.Data), filepath.Join(base, "build"), filepath.Join(base, "downloads"), nil
}

type imageBuildOptions struct {
	IO          *IOStreams
	LoadProfile func(string) (*profile.Profile, error)
	Engine      func(context.Context, *profile.Profile) (Engine, error)
	ImageDirs   func() (manifest, work, downloads string, err error)
	Now         func() time.Time
	ReadFile    func(string) ([]byte, error)
	LookPath    func(string) (string, error)

	Profile                            string
	Verbose                            bool
	Base, Rootfs, Mirror, Catalog, Tag string
	Stacks, CACerts                    []string
	// Dockerfile, Context and BuildArgs: a repository's own Dockerfile as the first stage.
	Dockerfile, Context string
	BuildArgs           []string
	IDE                 bool
	Force, DryRun       bool
	Output              string
}

func newImageBuildCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &imageBuildOptions{IO: f.IO, LoadProfile: f.LoadProfile, Engine: f.engineFor(g), ImageDirs: f.imageDirs,
		Now: f.Now, ReadFile: f.ReadFile, LookPath: f.LookPath}
	cmd := &cobra.Command{
		Use:   "build [--base IMAGE | --rootfs PATH | --dockerfile PATH --tag REF] [--stack NAME[@VERSION]]... [--ide]",
		Short: "Build the default workspace image (and stack variants) on this host",
		Long: `Build the workspace image in stages, each tagged only once it is complete:

  1. root filesystem  debootstrap --variant=minbase from the Debian mirror in your apt sources
                      (needs root and the debootstrap package), imported with Podman.
                      --base IMAGE starts from a registry image instead; --rootfs PATH imports
                      a root filesystem you made (a directory or a tar).
  2. base             git, ca-certificates, bash, coreutils, procps and the user agent
  3. tools            Node.js and npm from Debian; claude-code and codex from the npm registry
                      at the versions the catalog pins, each checked with --version
  4. stacks           with --stack: runtimes from the catalog (see: image stacks)
  5. ide              with --ide: code-server (VS Code in the browser) from npm at the
                      version the catalog pins, its native modules compiled here (about
                      3 minutes, +260 MB); tagged :ide (or :STACKS_ide) for up --ide

A stage whose inputs (its Containerfile, arguments, parent and CA certificates) are unchanged
is reused, so a second build with nothing changed builds nothing. A failed build leaves the
previous image under its name. Behind a TLS-inspecting proxy, pass the proxy's CA with
--ca-cert so apt and npm inside the build trust it; the certificate stays in the image's trust
store.`,
		Example: `  # The default image, with no container registry
  sudo sourceosctl agent-machine image build

  # Show the stages and which would be reused, change nothing
  sourceosctl agent-machine image build --dry-run

  # Start from a registry image and add Go and Python
  sourceosctl agent-machine image build --base docker.io/library/debian:bookworm-slim --stack go --stack python@3.11

  # The browser IDE for up --ide, on the default image or a stack image
  sudo sourceosctl agent-machine image build --ide
  sourceosctl agent-machine image build --stack go --ide

  # A repository's own Dockerfile (a devcontainer's build.dockerfile), the tools on top
  sourceosctl agent-machine image build --dockerfile .devcontainer/Dockerfile --context . --tag localhost/sourceos/devcontainer-app:latest

  # Behind a TLS-inspecting proxy
  sudo sourceosctl agent-machine image build --ca-cert /usr/local/share/ca-certificates/corp.crt`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile, opts.Verbose = g.Profile, g.Verbose
			if err := opts.validate(); err != nil {
				return err
			}
			return interrupted(cmd.Context(), runImageBuild(cmd.Context(), opts))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Base, "base", "", "start from this image instead of a debootstrap root filesystem")
	fl.StringVar(&opts.Rootfs, "rootfs", "", "import this root filesystem (directory or tar) instead of running debootstrap")
	fl.StringVar(&opts.Dockerfile, "dockerfile", "", "build this `Dockerfile` first (a devcontainer's build.dockerfile) and put the tools on it; needs --tag")
	fl.StringVar(&opts.Context, "context", "", "the Dockerfile's build context `DIR` (default: its directory)")
	fl.StringArrayVar(&opts.BuildArgs, "build-arg", nil, "a build argument `NAME=VALUE` of the Dockerfile (repeatable)")
	fl.StringVar(&opts.Mirror, "mirror", "", "Debian mirror for debootstrap (default: the one in /etc/apt/sources*)")
	fl.StringArrayVar(&opts.Stacks, "stack", nil, "add a runtime from the catalog: NAME or NAME@VERSION (repeatable)")
	fl.StringArrayVar(&opts.CACerts, "ca-cert", nil, "PEM CA certificate to trust inside the image (repeatable)")
	fl.StringVar(&opts.Catalog, "catalog", "", "runtime catalog JSON replacing the embedded one")
	fl.BoolVar(&opts.IDE, "ide", false, "add the browser IDE (code-server) for up --ide")
	fl.StringVar(&opts.Tag, "tag", "", "name of the result (default "+image.DefaultRef+", :STACKS with --stack, :ide or :STACKS_ide with --ide)")
	fl.BoolVar(&opts.Force, "force", false, "rebuild every stage even when its inputs are unchanged")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the stages and which would be reused; build nothing")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func loadCatalog(path string) (*image.Catalog, error) {
	if path == "" {
		return image.DefaultCatalog(), nil
	}
	return image.LoadCatalog(path)
}

func (o *imageBuildOptions) validate() error {
	if err := validateOutput(o.Output, outTable, outJSON); err != nil {
		return err
	}
	if o.Dockerfile == "" && (o.Context != "" || len(o.BuildArgs) > 0) {
		return usageErrorf("--context and --build-arg go with --dockerfile")
	}
	if o.Dockerfile != "" && o.Tag == "" {
		return usageErrorf("--dockerfile needs --tag: name the image (the profile's spec.image.ref), so the default image is not replaced")
	}
	for _, a := range o.BuildArgs {
		if k, _, ok := strings.Cut(a, "="); !ok || k == "" {
			return usageErrorf("--build-arg %q: use NAME=VALUE", a)
		}
	}
	if o.Tag != "" {
		if _, err := profile.Parse("--tag", []byte(fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: t}\nspec: {host: {os: linux}, image: {ref: %q}}\n", o.Tag))); err != nil {
			return usageErrorf("--tag %q is not an image reference such as localhost/team/agent:1", o.Tag)
		}
	}
	return nil
}

func runImageBuild(ctx context.Context, opts *imageBuildOptions) error {
	cat, err := loadCatalog(opts.Catalog)
	if err != nil {
		return err
	}
	stacks, err := cat.Resolve(opts.Stacks) // unknown stacks fail before anything else
	if err != nil {
		return err
	}
	manifestPath, work, _, err := opts.ImageDirs()
	if err != nil {
		return err
	}
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	engine, err := opts.Engine(ctx, prof)
	if err != nil {
		return err
	}
	b := &image.Builder{Engine: engine, ManifestPath: manifestPath, WorkDir: work, Out: opts.IO.ErrOut,
		Geteuid: os.Geteuid, LookPath: opts.LookPath, ReadFile: opts.ReadFile, Now: opts.Now}
	req := image.BuildRequest{Ref: opts.Tag, Base: opts.Base, Rootfs: opts.Rootfs, Mirror: opts.Mirror, Stacks: stacks,
		IDE: opts.IDE, CACerts: opts.CACerts, Catalog: cat, Force: opts.Force, Dockerfile: opts.Dockerfile, Context: opts.Context}
	for _, a := range opts.BuildArgs {
		k, v, _ := strings.Cut(a, "=")
		if req.BuildArgs == nil {
			req.BuildArgs = map[string]string{}
		}
		req.BuildArgs[k] = v
	}
	plan, err := b.Plan(ctx, req)
	if err != nil {
		return err
	}
	version := cat.ToolVersions()
	for _, s := range stacks {
		version += ", " + s.Stack + " " + s.Version
	}
	if opts.IDE {
		version += ", code-server " + cat.IDE.CodeServer
	}
	if opts.DryRun {
		if opts.Output == outJSON {
			return writeJSON(opts.IO.Out, plan)
		}
		printBuildPlan(opts.IO.Out, plan, true)
		return nil
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("build directory: %w", err)
	}
	start := opts.Now()
	log, err := newBuildLog(b, opts, filepath.Join(filepath.Dir(work), "logs"), start)
	if err != nil {
		return err
	}
	entry, err := b.Run(ctx, plan, version)
	if closeErr := log.close(err); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(opts.IO.Out, struct {
			*image.BuildPlan
			Entry *image.Entry `json:"entry"`
		}{plan, entry})
	}
	printBuildPlan(opts.IO.Out, plan, false)
	fmt.Fprintf(opts.IO.Out, "✓ %s is image %.12s (%s), built in %s\n", entry.Ref, entry.ID, version, opts.Now().Sub(start).Round(time.Second))
	return nil
}

func printBuildPlan(w io.Writer, plan *image.BuildPlan, dry bool) {
	if dry {
		fmt.Fprintf(w, "dry run: building %s would take these stages (nothing was changed):\n", plan.Ref)
	}
	for i, st := range plan.Steps {
		fmt.Fprintf(w, "  %d. %-32s %-7s %s\n", i+1, st.Name, st.Action, st.Tag)
		if dry && st.Action != "reuse" && st.Action != "reused" {
			for _, c := range st.Command {
				fmt.Fprintf(w, "       $ %s\n", c)
			}
		}
	}
}

type imagePullOptions struct {
	IO          *IOStreams
	LoadProfile func(string) (*profile.Profile, error)
	Engine      func(context.Context, *profile.Profile) (Engine, error)
	ImageDirs   func() (manifest, work, downloads string, err error)
	Now         func() time.Time

	Profile string
	Source  string
	Force   bool
	DryRun  bool
	Output  string
	update  bool
}

func newImagePullCmd(f *Factory, g *GlobalOptions, update bool) *cobra.Command {
	opts := &imagePullOptions{IO: f.IO, LoadProfile: f.LoadProfile, Engine: f.engineFor(g), ImageDirs: f.imageDirs, Now: f.Now, update: update}
	cmd := &cobra.Command{
		Use:   "pull [--source registry|archive]",
		Short: "Fetch the profile's image from its sources",
		Long: `Fetch spec.image.ref from the sources the profile lists under spec.image.sources, in
their order, stopping at the first that works:

  registry  pulled by digest through the Podman API (the digest is looked up first, so what
            is pulled is exactly what was looked up), then named spec.image.ref
  archive   a 'podman save' archive at an https URL or a host path; a download is resumed
            after an interruption, and its SHA-256 must equal the profile's before anything
            is loaded

A profile without sources pulls spec.image.ref from its own registry. The result is recorded
in the image manifest (see: image list).`,
		Example: `  sourceosctl agent-machine image pull --profile team.yaml
  sourceosctl agent-machine image pull --profile team.yaml --source archive
  sourceosctl agent-machine image pull --profile team.yaml --dry-run`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if err := opts.validate(); err != nil {
				return err
			}
			return interrupted(cmd.Context(), runImagePull(cmd.Context(), opts))
		},
	}
	if update {
		cmd.Use = "update [--force]"
		cmd.Short = "Fetch the profile's image again only if its source changed"
		cmd.Long = `Compare each source's current digest with the one recorded when the image was last
fetched: a registry's manifest digest (one HEAD request, nothing downloaded) or an archive's
declared SHA-256. Fetch only when it differs or the image is gone; --force always fetches.`
		cmd.Example = `  sourceosctl agent-machine image update --profile team.yaml
  sourceosctl agent-machine image update --profile team.yaml --dry-run
  sourceosctl agent-machine image update --profile team.yaml --force`
		cmd.Flags().BoolVar(&opts.Force, "force", false, "fetch even when the source is unchanged")
	}
	cmd.Flags().StringVar(&opts.Source, "source", "", "use only sources of this kind: registry or archive")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "look up the sources and say what would be fetched; change nothing")
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func (o *imagePullOptions) validate() error {
	if err := validateOutput(o.Output, outTable, outJSON); err != nil {
		return err
	}
	if o.Source != "" && o.Source != image.KindRegistry && o.Source != image.KindArchive {
		return usageErrorf("--source must be registry or archive, not %q", o.Source)
	}
	return nil
}

func runImagePull(ctx context.Context, opts *imagePullOptions) error {
	io := opts.IO
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	ref := prof.Spec.Image.Ref
	sources, err := image.Sources(ref, prof.Spec.Image.Sources, opts.Source)
	if err != nil {
		return err
	}
	manifestPath, _, downloads, err := opts.ImageDirs()
	if err != nil {
		return err
	}
	engine, err := opts.Engine(ctx, prof)
	if err != nil {
		return err
	}
	fetcher := &image.Fetcher{Engine: engine, ManifestPath: manifestPath, Log: io.ErrOut, Now: opts.Now,
		Downloader: &image.Downloader{Dir: downloads, Client: http.DefaultClient, Progress: newByteProgress(io.ErrOut, io.ErrTTY)}}
	res, err := fetcher.Fetch(ctx, ref, sources, image.Options{Update: opts.update && !opts.Force, DryRun: opts.DryRun})
	if err != nil {
		return err
	}
	if opts.Output == outJSON {
		return writeJSON(io.Out, res)
	}
	last := res.Attempts[len(res.Attempts)-1]
	switch {
	case opts.DryRun && res.Changed:
		fmt.Fprintf(io.Out, "dry run: would fetch %s from %s (%s); nothing was changed\n", ref, last.Source, last.Digest)
	case !res.Changed:
		fmt.Fprintf(io.Out, "✓ %s is up to date: %s still has %s; nothing fetched\n", ref, last.Source, last.Digest)
	default:
		fmt.Fprintf(io.Out, "✓ %s fetched from %s: image %.12s, digest %s\n", ref, last.Source, res.Entry.ID, res.Entry.Digest)
	}
	if want := prof.Spec.Image.Digest; want != "" && res.Entry != nil && res.Entry.Digest != want {
		fmt.Fprintf(io.ErrOut, "warning: the profile pins %s but %s has %s; sessions will refuse it until spec.image.digest is updated\n", want, ref, res.Entry.Digest)
	}
	return nil
}

type imageListOptions struct {
	IO          *IOStreams
	LoadProfile func(string) (*profile.Profile, error)
	Engine      func(context.Context, *profile.Profile) (Engine, error)
	ImageDirs   func() (manifest, work, downloads string, err error)

	Profile string
	Output  string
}

// ImageListItem is one row of `image list`.
type ImageListItem struct {
	image.Entry
	// Local is present (the manifest's image is in local storage under ref), changed (ref
	// names another image now), missing, or unknown (Podman unreachable).
	Local   string `json:"local"`
	LocalID string `json:"localId,omitempty"`
}

func newImageListCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &imageListOptions{IO: f.IO, LoadProfile: f.LoadProfile, Engine: f.engineFor(g), ImageDirs: f.imageDirs}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the images fetched or built, and whether each is still present",
		Long: `Print the image manifest: per image reference, where it came from (registry, archive or a
local build), the source's digest then, the version label and when it was fetched, next to
what local storage holds now (present, changed, missing).`,
		Example: `  sourceosctl agent-machine image list
  sourceosctl agent-machine image list -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Profile = g.Profile
			if err := validateOutput(opts.Output, outTable, outJSON); err != nil {
				return err
			}
			return runImageList(cmd.Context(), opts)
		},
	}
	addOutputFlag(cmd, &opts.Output, outTable, outJSON)
	return cmd
}

func runImageList(ctx context.Context, opts *imageListOptions) error {
	io := opts.IO
	manifestPath, _, _, err := opts.ImageDirs()
	if err != nil {
		return err
	}
	m, err := image.ReadManifest(manifestPath)
	if err != nil {
		return err
	}
	prof, err := opts.LoadProfile(opts.Profile)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, connErr := opts.Engine(cctx, prof)
	items := []ImageListItem{}
	for _, e := range m.Sorted() {
		it := ImageListItem{Entry: e, Local: "unknown"}
		if connErr == nil {
			img, present, err := client.Image(cctx, e.Ref)
			switch {
			case err != nil:
			case !present:
				it.Local = "missing"
			case img.ID == e.ID:
				it.Local, it.LocalID = "present", img.ID
			default:
				it.Local, it.LocalID = "changed", img.ID
			}
		}
		items = append(items, it)
	}
	if connErr != nil {
		fmt.Fprintf(io.ErrOut, "warning: cannot reach Podman (%v); local presence is unknown\n", connErr)
	}
	if opts.Output == outJSON {
		return writeJSON(io.Out, struct {
			Manifest string          `json:"manifest"`
			Images   []ImageListItem `json:"images"`
		}{manifestPath, items})
	}
	if len(items) == 0 {
		fmt.Fprintf(io.Out, "No images fetched or built yet (manifest: %s).\nBuild the default one: sourceosctl agent-machine image build\n", manifestPath)
		return nil
	}
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tLOCAL\tID\tSOURCE\tSOURCE DIGEST\tVERSION\tFETCHED")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%.12s\t%s %s\t%.19s\t%s\t%s\n", it.Ref, it.Local, it.ID, it.Source.Kind, it.Source.Location,
			it.Source.Digest, orNone(it.Version), it.Fetched.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// writeToolHosts prints each built-in tool's hosts: what spec.network: gateway allows for it
// (its API and sign-in hosts) and what it lists without allowing, with where each comes from.
func writeToolHosts(w io.Writer) error {
	fmt.Fprintln(w, "\nTool hosts (spec.network: gateway allows api and auth hosts for the session's tool; toolHosts: false turns this off):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tHOST\tPURPOSE\tALLOWED\tSOURCE")
	for _, d := range tool.Builtins() {
		for _, h := range d.Hosts {
			allowed := "no"
			if h.Allowed() {
				allowed = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, h.Host, h.Purpose, allowed, h.Source)
		}
	}
	return tw.Flush()
}

func newImageStacksCmd(f *Factory) *cobra.Command {
	var catalogPath, output string
	cmd := &cobra.Command{
		Use:   "stacks",
		Short: "List the runtimes `image build --stack` can add, from the catalog",
		Long: `Print the runtime catalog: the tool versions the default image pins and each stack with
its versions and Debian packages. The first version of a stack is its default. --catalog reads
a replacement catalog (same JSON shape) instead of the embedded one.

Then the hosts each built-in tool needs or contacts, with where each comes from: with
spec.network: gateway a session's tool may reach its api and auth hosts; the others are
listed so that a denial of one is no surprise (allow one with --allow-host).`,
		Example: `  sourceosctl agent-machine image stacks
  sourceosctl agent-machine image stacks -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			cat, err := loadCatalog(catalogPath)
			if err != nil {
				return err
			}
			hosts := map[string][]tool.Host{}
			for _, d := range tool.Builtins() {
				hosts[d.Name] = d.Hosts
			}
			if output == outJSON {
				return writeJSON(f.IO.Out, struct {
					*image.Catalog
					ToolHosts map[string][]tool.Host `json:"toolHosts"`
				}{cat, hosts})
			}
			fmt.Fprintf(f.IO.Out, "Catalog: %s (Debian %s; %s; image build --ide: code-server %s)\n", cat.Source, cat.Suite, cat.ToolVersions(), cat.IDE.CodeServer)
			tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STACK\tVERSION\tPACKAGES\tDESCRIPTION")
			for _, s := range cat.Stacks {
				for i, v := range s.Versions {
					name := s.ID
					if i == 0 {
						name += " (default)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, v.Version, strings.Join(v.Packages, " "), s.Description)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return writeToolHosts(f.IO.Out)
		},
	}
	cmd.Flags().StringVar(&catalogPath, "catalog", "", "runtime catalog JSON replacing the embedded one")
	addOutputFlag(cmd, &output, outTable, outJSON)
	return cmd
}

// offerBuild asks, on a terminal, to build the image a command found missing when image build
// is what makes it (the default image, a stack image, an IDE variant), and builds it: built
// says whether it did. Nothing is asked without a terminal or for any other error: the
// missing image's own error gives the command.
func offerBuild(ctx context.Context, f *Factory, g *GlobalOptions, err error) (built bool, _ error) {
	var missing *agentmachine.MissingError
	if !errors.As(err, &missing) || !f.IO.InTTY {
		return false, nil
	}
	ref, isImage := strings.CutPrefix(missing.Component, "image ")
	if !isImage {
		return false, nil
	}
	stacks, ide, ok := agentmachine.BuildArgs(ref)
	if !ok {
		return false, nil
	}
	command, _ := agentmachine.BuildCommand(ref)
	fmt.Fprintf(f.IO.ErrOut, "Image %s is not built on this host yet. Build it now (%s)? [y/N] ", ref, command)
	answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return false, nil
	}
	opts := &imageBuildOptions{IO: f.IO, LoadProfile: f.LoadProfile, Engine: f.engineFor(g), ImageDirs: f.imageDirs,
		Now: f.Now, ReadFile: f.ReadFile, LookPath: f.LookPath, Profile: g.Profile, Stacks: stacks, IDE: ide, Output: outTable}
	if err := runImageBuild(ctx, opts); err != nil {
		return false, err
	}
	return true, nil
}
