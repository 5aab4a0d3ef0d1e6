package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// Engine is what fetching and building need from Podman; *podman.Client implements it.
type Engine interface {
	Image(ctx context.Context, ref string) (container.Image, bool, error)
	PullFrom(ctx context.Context, ref string, tlsVerify bool, progress io.Writer) error
	RemoteDigest(ctx context.Context, ref string, tlsVerify bool) (string, error)
	Load(ctx context.Context, path string) ([]string, error)
	Tag(ctx context.Context, src, ref string) error
	Untag(ctx context.Context, ref string) error
}

// VersionLabel is the OCI label whose value the manifest records as an image's version.
const VersionLabel = "org.opencontainers.image.version"

// Source is one place to fetch an image from, as the profile lists it.
type Source struct {
	profile.ImageSource
}

// Kind is registry or archive.
func (s Source) Kind() string {
	if s.Registry != "" {
		return KindRegistry
	}
	return KindArchive
}

// Location is the registry reference or the archive's URL or path.
func (s Source) Location() string {
	if s.Registry != "" {
		return s.Registry
	}
	return s.Archive
}

func (s Source) tlsVerify() bool { return s.TLSVerify == nil || *s.TLSVerify }

func (s Source) String() string { return s.Kind() + " " + s.Location() }

// Sources returns the sources to try for ref, in the profile's order. A profile that lists
// none fetches ref from its own registry, unless ref is a localhost/ name (built here, never
// pulled). only, when set, keeps sources of that kind.
func Sources(ref string, listed []profile.ImageSource, only string) ([]Source, error) {
	var out []Source
	for _, s := range listed {
		out = append(out, Source{s})
	}
	if len(listed) == 0 && !strings.HasPrefix(ref, "localhost/") {
		out = append(out, Source{profile.ImageSource{Registry: ref}})
	}
	if only != "" {
		var kept []Source
		for _, s := range out {
			if s.Kind() == only {
				kept = append(kept, s)
			}
		}
		out = kept
	}
	if len(out) == 0 {
		fix := "list registry or archive sources under spec.image.sources in the profile"
		if strings.HasPrefix(ref, "localhost/") && len(listed) == 0 {
			fix = "localhost/ images are built on this host: sourceosctl agent-machine image build, or " + fix
		}
		what := "no image source"
		if only != "" {
			what = "no " + only + " source"
		}
		return nil, &InputError{Msg: fmt.Sprintf("%s for %s", what, ref), Fix: fix}
	}
	return out, nil
}

// Fetcher gets images from their sources onto the Podman host and records them.
type Fetcher struct {
	Engine       Engine
	ManifestPath string
	Downloader   *Downloader
	Log          io.Writer // progress and decisions, for humans
	Now          func() time.Time
}

// Attempt is one source tried, for reports and --dry-run.
type Attempt struct {
	Source   string `json:"source"`
	Digest   string `json:"digest,omitempty"` // the source's current digest, when known
	Action   string `json:"action"`           // fetched, unchanged, would-fetch, failed
	Error    string `json:"error,omitempty"`
	Manifest *Entry `json:"entry,omitempty"`
}

// Result is what pull or update did for one image reference.
type Result struct {
	Ref      string    `json:"ref"`
	Changed  bool      `json:"changed"`
	Entry    *Entry    `json:"entry,omitempty"`
	Attempts []Attempt `json:"attempts"`
}

// Options change how Fetch decides.
type Options struct {
	// Update fetches only when the source's digest differs from the manifest's (or the image
	// is gone locally); without it, Fetch always fetches.
	Update bool
	DryRun bool
}

// Fetch tries each source in order and stops at the first that works. With Update, a source
// whose current digest equals the manifest's, with the image still present, is left alone.
func (f *Fetcher) Fetch(ctx context.Context, ref string, sources []Source, opt Options) (*Result, error) {
	res := &Result{Ref: ref}
	m, err := ReadManifest(f.ManifestPath)
	if err != nil {
		return nil, err
	}
	prev, known := m.Images[ref]
	var errs []error
	for _, src := range sources {
		at := Attempt{Source: src.String()}
		digest, err := f.sourceDigest(ctx, src)
		if err != nil {
			at.Action, at.Error = "failed", err.Error()
			res.Attempts = append(res.Attempts, at)
			errs = append(errs, err)
			f.logf("%s: %v\n", src, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		at.Digest = digest
		if opt.Update && known && prev.Source.Kind == src.Kind() && prev.Source.Location == src.Location() && prev.Source.Digest == digest {
			if img, present, err := f.Engine.Image(ctx, ref); err == nil && present && img.ID == prev.ID {
				at.Action = "unchanged"
				res.Attempts = append(res.Attempts, at)
				res.Entry = &prev
				f.logf("%s is up to date (%s %s)\n", ref, src, shortDigest(digest))
				return res, nil
			}
		}
		if opt.DryRun {
			at.Action = "would-fetch"
			res.Attempts = append(res.Attempts, at)
			res.Changed = true
			return res, nil
		}
		e, err := f.fetch(ctx, ref, src, digest)
		if err != nil {
			at.Action, at.Error = "failed", err.Error()
			res.Attempts = append(res.Attempts, at)
			errs = append(errs, err)
			f.logf("%s: %v\n", src, err)
			var sum *ChecksumError
			if errors.As(err, &sum) || ctx.Err() != nil {
				break // a wrong archive is a problem to fix, not to route around
			}
			continue
		}
		at.Action = "fetched"
		res.Attempts = append(res.Attempts, at)
		res.Entry, res.Changed = e, true
		return res, nil
	}
	return res, &FetchError{Ref: ref, Errs: errs}
}

// Statuser is a Progress that can also show a line of text: a pull's current step.
type Statuser interface{ Status(line string) }

// statusWriter turns the service's pull output into status lines for the progress display,
// or passes it to the log when the display cannot show text.
type statusWriter struct {
	p   Progress
	log io.Writer
	buf []byte
}

func (w *statusWriter) Write(b []byte) (int, error) {
	s, ok := w.p.(Statuser)
	if !ok {
		if w.log != nil {
			return w.log.Write(b)
		}
		return len(b), nil
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		s.Status(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// FetchError says every source failed; it wraps each source's error.
type FetchError struct {
	Ref  string
	Errs []error
}

func (e *FetchError) Error() string {
	var parts []string
	for _, err := range e.Errs {
		parts = append(parts, err.Error())
	}
	return fmt.Sprintf("could not fetch %s from any source: %s", e.Ref, strings.Join(parts, "; "))
}

func (e *FetchError) Unwrap() []error { return e.Errs }

// sourceDigest is the source's digest now: the registry's manifest digest (a HEAD request) or
// the archive's declared SHA-256.
func (f *Fetcher) sourceDigest(ctx context.Context, src Source) (string, error) {
	if src.Registry != "" {
		return f.Engine.RemoteDigest(ctx, src.Registry, src.tlsVerify())
	}
	return "sha256:" + src.SHA256, nil
}

// fetch gets the image from one source, names it ref and records it. Nothing is named or
// recorded unless the whole fetch succeeded.
func (f *Fetcher) fetch(ctx context.Context, ref string, src Source, digest string) (*Entry, error) {
	var loaded string
	switch src.Kind() {
	case KindRegistry:
		// Pull by digest so what is pulled is what was looked up, even if the tag moves.
		byDigest := repoOf(src.Registry) + "@" + digest
		p := f.progress()
		p.Start(fmt.Sprintf("Pulling %s (%s)", src.Registry, shortDigest(digest)), -1)
		err := f.Engine.PullFrom(ctx, byDigest, src.tlsVerify(), &statusWriter{p: p, log: f.Log})
		p.Done()
		if err != nil {
			return nil, err
		}
		loaded = byDigest
	case KindArchive:
		path := src.Archive
		if src.IsURL() {
			p, err := f.Downloader.Fetch(ctx, src.Archive, src.SHA256)
			if err != nil {
				return nil, err
			}
			path = p
		} else {
			f.logf("Checking sha256 of %s\n", path)
			got, err := FileSHA256(path)
			if err != nil {
				return nil, fmt.Errorf("archive %s: %w", path, err)
			}
			if got != src.SHA256 {
				return nil, &ChecksumError{Source: path, Want: src.SHA256, Got: got}
			}
		}
		f.logf("Loading %s\n", src.Archive)
		names, err := f.Engine.Load(ctx, path)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("archive %s holds no image", src.Archive)
		}
		loaded = names[0]
		if src.IsURL() {
			removeQuietly(path) // loaded: the copy is no longer needed
		}
	}
	if err := f.Engine.Tag(ctx, loaded, ref); err != nil {
		return nil, err
	}
	img, present, err := f.Engine.Image(ctx, ref)
	if err != nil || !present {
		return nil, fmt.Errorf("image %s: not found after fetching it: %v", ref, err)
	}
	e := &Entry{Ref: ref, ID: img.ID, Digest: img.Digest, Version: img.Labels[VersionLabel],
		Source: Origin{Kind: src.Kind(), Location: src.Location(), Digest: digest}, Fetched: f.now()}
	if err := Record(f.ManifestPath, *e); err != nil {
		return nil, err
	}
	f.logf("%s is now %s (id %.12s)\n", ref, orDash(img.Digest), img.ID)
	return e, nil
}

func (f *Fetcher) progress() Progress {
	if f.Downloader == nil {
		return noProgress{}
	}
	return f.Downloader.progress()
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		fmt.Fprintf(f.Log, format, args...)
	}
}

func (f *Fetcher) now() time.Time {
	if f.Now == nil {
		return time.Now().UTC()
	}
	return f.Now().UTC()
}

// repoOf strips the tag or digest from a reference.
func repoOf(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
