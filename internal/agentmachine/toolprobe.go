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

var digestLine = regexp.MustCompile(`(?m)^([0-9a-f]{64})\s+\S+\s*$`)

// ProbeTool measures the plan's tool in a short-lived container built from the same
// hardened spec, without secrets or stdin. Results are cached per image ID in cacheFile:
// an image ID fixes the binary, so one measurement per image suffices.
func (s *Session) ProbeTool(ctx context.Context, pl *Plan, imageID, cacheFile string) (ToolFacts, error) {
	key := imageID + "/" + pl.Tool.Binary
	cache := map[string]ToolFacts{}
	if raw, err := os.ReadFile(cacheFile); err == nil {
		_ = json.Unmarshal(raw, &cache)
	}
	if f, ok := cache[key]; ok {
		return f, nil
	}
	spec := pl.Container
	spec.Name += "-probe"
	spec.Command = []string{"sh", "-c", probeScript, "sh", pl.Tool.Binary}
	spec.Secrets, spec.Stdin, spec.TTY = nil, false, false
	id, err := s.Engine.Create(ctx, spec)
	if err != nil {
		return ToolFacts{}, err
	}
	defer func() { _ = s.Engine.Remove(id) }()
	observed, _, err := s.Engine.Inspect(ctx, id)
	if err != nil {
		return ToolFacts{}, err
	}
	if diffs := container.Verify(spec, observed); len(diffs) > 0 {
		return ToolFacts{}, fmt.Errorf("the server weakened the probe container: %s", strings.Join(diffs, "; "))
	}
	var out bytes.Buffer
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ready := make(chan bool, 1)
	done := make(chan error, 1)
	go func() { done <- s.Engine.Attach(pctx, id, nil, &out, &out, ready) }()
	select {
	case <-ready:
	case err := <-done:
		return ToolFacts{}, err
	}
	if err := s.Engine.Start(pctx, id); err != nil {
		return ToolFacts{}, err
	}
	<-done
	code, err := s.Engine.Wait(pctx, id)
	if err != nil {
		return ToolFacts{}, err
	}
	text := strings.TrimSpace(out.String())
	m := digestLine.FindStringSubmatchIndex(text)
	if code != 0 || m == nil {
		return ToolFacts{}, fmt.Errorf("%s --version in the image exited %d: %s", pl.Tool.Binary, code, firstLineOfText(text))
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

func firstLineOfText(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
