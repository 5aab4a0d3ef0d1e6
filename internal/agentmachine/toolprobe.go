package agentmachine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
)

// ToolFacts is a tool's version and the SHA-256 of its binary, measured in the image.
type ToolFacts struct {
	Version      string `json:"version"`
	BinaryDigest string `json:"binaryDigest"`
}

// probeScript prints the tool's --version output, then "sha256 path" of its binary.
const probeScript = `p=$(command -v "$1") || { echo "not found: $1" >&2; exit 127; }; "$1" --version 2>&1 | head -n 3; sha256sum "$p"`

// probeTimeout bounds the measurement: a tool whose --version hangs is stopped.
const probeTimeout = 60 * time.Second

var digestLine = regexp.MustCompile(`(?m)^([0-9a-f]{64})\s+\S+\s*$`)

// probeTool measures the plan's tool in a short-lived container built from the same
// hardened spec, without secrets or stdin, through the same create-compare-run steps as the
// session. Results are cached per image ID: an image ID fixes the binary, so one
// measurement per image suffices.
func (r *sessionRun) probeTool(ctx context.Context) (ToolFacts, error) {
	cacheFile := r.Dirs.ToolCache()
	key := r.out.Image.ID + "/" + r.plan.Tool.Binary
	cache := map[string]ToolFacts{}
	if raw, err := os.ReadFile(cacheFile); err == nil {
		_ = json.Unmarshal(raw, &cache)
	}
	if f, ok := cache[key]; ok {
		return f, nil
	}
	spec := r.plan.Container
	spec.Name += "-probe"
	spec.Command = []string{"sh", "-c", probeScript, "sh", r.plan.Tool.Binary}
	spec.Secrets, spec.Stdin, spec.TTY = nil, false, false
	spec.Mounts, spec.Overlays = []container.Mount{}, nil // the tool's version needs no workspace
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var out bytes.Buffer
	box := &containerRun{engine: r.engine, spec: spec, image: r.out.Image}
	if h := r.plan.Helper; h != nil {
		box.nonce = newNonce()
		box.spec = withHelper(spec, *h, r.out.Image, box.nonce)
	}
	res, diffs, err := box.once(pctx, nil, &out, &out, time.Second)
	switch {
	case err != nil:
		return ToolFacts{}, err
	case len(diffs) > 0:
		return ToolFacts{}, fmt.Errorf("the server weakened the probe container: %s", strings.Join(diffs, "; "))
	case len(res.Refused) > 0:
		return ToolFacts{}, fmt.Errorf("the probe container, checked from inside, is not what was planned: %s", strings.Join(res.Refused, "; "))
	case res.Interrupted:
		return ToolFacts{}, fmt.Errorf("%s --version did not finish within %s", r.plan.Tool.Binary, probeTimeout)
	}
	text := strings.TrimSpace(out.String())
	m := digestLine.FindStringSubmatchIndex(text)
	if res.Code != 0 || m == nil {
		return ToolFacts{}, fmt.Errorf("%s --version in the image exited %d: %s", r.plan.Tool.Binary, res.Code, firstLine(text))
	}
	facts := ToolFacts{Version: strings.TrimSpace(text[:m[0]]), BinaryDigest: "sha256:" + text[m[2]:m[3]]}
	cache[key] = facts
	if raw, err := json.MarshalIndent(cache, "", "  "); err == nil {
		_ = atomicfile.Write(cacheFile, raw, 0o600, atomicfile.Options{})
	}
	return facts, nil
}

// ToolCache is where measured tool versions are kept.
func (d Dirs) ToolCache() string { return filepath.Join(d.State, "tool-versions.json") }
