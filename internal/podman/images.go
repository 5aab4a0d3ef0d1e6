package podman

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/domain/entities/types"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	imagetypes "go.podman.io/image/v5/types"

	"github.com/sourceos/sourceosctl/internal/container"
)

// PullFrom fetches ref from its registry; tlsVerify false also allows plain HTTP. Progress
// lines from the service go to progress.
func (c *Client) PullFrom(ctx context.Context, ref string, tlsVerify bool, progress io.Writer) error {
	opts := new(images.PullOptions).WithSkipTLSVerify(!tlsVerify).WithQuiet(progress == nil)
	if progress != nil {
		opts = opts.WithProgressWriter(progress)
	}
	if _, err := images.Pull(c.with(ctx), ref, opts); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// RemoteDigest asks ref's registry for the manifest digest the reference points at now (a
// HEAD request; nothing is downloaded). It runs on this host, with the registry credentials
// Podman's tools use here.
func (c *Client) RemoteDigest(ctx context.Context, ref string, tlsVerify bool) (string, error) {
	return RemoteDigest(ctx, ref, tlsVerify)
}

// RemoteDigest is Client.RemoteDigest without a connection.
func RemoteDigest(ctx context.Context, ref string, tlsVerify bool) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	iref, err := docker.NewReference(reference.TagNameOnly(named))
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	sys := &imagetypes.SystemContext{}
	if !tlsVerify {
		sys.DockerInsecureSkipTLSVerify = imagetypes.OptionalBoolTrue
	}
	d, err := docker.GetDigest(ctx, sys, iref)
	if err != nil {
		return "", fmt.Errorf("look up %s in its registry: %w", ref, err)
	}
	return d.String(), nil
}

// Load loads a `podman save` archive (docker-archive or oci-archive) and returns the names
// it holds.
func (c *Client) Load(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep, err := images.Load(c.with(ctx), f)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Base(path), err)
	}
	return rep.Names, nil
}

// Tag adds ref as a name of the image src.
func (c *Client) Tag(ctx context.Context, src, ref string) error {
	repo, tag, err := splitRef(ref)
	if err != nil {
		return err
	}
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if err := images.Tag(cctx, src, tag, repo, nil); err != nil {
		return fmt.Errorf("tag %s as %s: %w", short(src), ref, err)
	}
	return nil
}

// Untag removes the name ref; the image stays if it has other names.
func (c *Client) Untag(ctx context.Context, ref string) error {
	repo, tag, err := splitRef(ref)
	if err != nil {
		return err
	}
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if err := images.Untag(cctx, ref, tag, repo, nil); err != nil {
		return fmt.Errorf("untag %s: %w", ref, err)
	}
	return nil
}

// RemoveImage removes an image by name or ID; containers using it block the removal.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if _, errs := images.Remove(cctx, []string{ref}, nil); len(errs) > 0 {
		return fmt.Errorf("remove image %s: %w", ref, errs[0])
	}
	return nil
}

// Import makes an image from a root filesystem tarball and names it ref.
func (c *Client) Import(ctx context.Context, r io.Reader, ref string, changes []string) (string, error) {
	opts := new(images.ImportOptions).WithReference(ref).WithChanges(changes)
	rep, err := images.Import(c.with(ctx), r, opts)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	return rep.Id, nil
}

// Build runs a build on the service and returns the new image's ID.
func (c *Client) Build(ctx context.Context, b container.Build) (string, error) {
	var opts types.BuildOptions
	opts.ContextDirectory = b.ContextDir
	opts.Output = b.Tag
	opts.Args = b.Args
	for k, v := range b.Labels {
		opts.Labels = append(opts.Labels, k+"="+v)
	}
	opts.Layers = true
	opts.RemoveIntermediateCtrs = true
	opts.Out, opts.Err = b.Out, b.Out
	opts.OutputFormat = "application/vnd.oci.image.manifest.v1+json"
	rep, err := images.Build(c.with(ctx), []string{filepath.Join(b.ContextDir, b.Containerfile)}, opts)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", b.Tag, err)
	}
	return strings.TrimSpace(rep.ID), nil
}

// splitRef splits a reference into the repository and tag Podman's tag calls take.
func splitRef(ref string) (repo, tag string, err error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return "", "", fmt.Errorf("image reference %q: needs a tag, not a digest", ref)
	}
	return tagged.Name(), tagged.Tag(), nil
}
