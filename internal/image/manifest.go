package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
)

// Source kinds recorded in the manifest.
const (
	KindRegistry = "registry"
	KindArchive  = "archive"
	KindBuild    = "build"
)

// Manifest records, per local image reference, where the image came from and what it was when
// fetched. It lives at <data dir>/images/manifest.json and is rewritten atomically.
type Manifest struct {
	SchemaVersion int              `json:"schemaVersion"`
	Images        map[string]Entry `json:"images"`
}

// Entry is one image in the manifest.
type Entry struct {
	Ref    string `json:"ref"`              // the local reference sessions use
	ID     string `json:"id"`               // Podman image ID
	Digest string `json:"digest,omitempty"` // the image's manifest digest in local storage
	Source Origin `json:"source"`
	// Version is the image's org.opencontainers.image.version label, or for built images the
	// pinned tool versions.
	Version string    `json:"version,omitempty"`
	Fetched time.Time `json:"fetched"`
}

// Origin says where an image came from and the source's digest at that time: the registry
// manifest digest, the archive's SHA-256, or the build's input hash.
type Origin struct {
	Kind     string `json:"kind"`
	Location string `json:"location"`
	Digest   string `json:"digest"`
}

// ManifestPath is where the manifest lives under the data directory.
func ManifestPath(dataDir string) string { return filepath.Join(dataDir, "images", "manifest.json") }

// ReadManifest reads the manifest; a missing file is an empty manifest.
func ReadManifest(path string) (*Manifest, error) {
	m := &Manifest{SchemaVersion: 1, Images: map[string]Entry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, &InputError{Msg: fmt.Sprintf("%s: not a valid image manifest: %v", path, err),
			Fix: "move it aside; `image pull` and `image build` write a new one"}
	}
	if m.Images == nil {
		m.Images = map[string]Entry{}
	}
	return m, nil
}

// Record reads the manifest at path, sets e and writes it back atomically.
func Record(path string, e Entry) error {
	m, err := ReadManifest(path)
	if err != nil {
		return err
	}
	m.Images[e.Ref] = e
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600, atomicfile.Options{}); err != nil {
		return fmt.Errorf("write image manifest: %w", err)
	}
	return nil
}

// Sorted returns the entries ordered by reference.
func (m *Manifest) Sorted() []Entry {
	out := make([]Entry, 0, len(m.Images))
	for _, e := range m.Images {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}
