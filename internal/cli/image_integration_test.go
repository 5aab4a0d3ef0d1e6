package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

const fetchedRef = "localhost/sosctl-it/fetched:1"

// imageProfile writes a profile whose spec.image is ref with the given sources YAML.
func imageProfile(t testing.TB, w *workspace, ref, sources string) {
	t.Helper()
	body := fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata:\n  name: images\nspec:\n  host:\n    os: linux\n  image:\n    ref: %s\n", ref)
	if sources != "" {
		body += "    sources:\n" + sources
	}
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// saveArchive writes `podman save` of ref to a file and returns its path and SHA-256.
func saveArchive(t testing.TB, e *podmantest.Env, ref string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	if out, err := e.Podman("save", "--format", "docker-archive", "-o", path, ref); err != nil {
		t.Fatalf("podman save: %v: %s", err, out)
	}
	sum, err := image.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// otherImage makes a second, distinct image (a one-file root filesystem) under ref.
func otherImage(t *testing.T, e *podmantest.Env, ref, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := e.Command("tar", "-C", dir, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	if out, err := e.Podman("import", "--change", "LABEL org.opencontainers.image.version="+content, tarPath, ref); err != nil {
		t.Fatalf("podman import: %v: %s", err, out)
	}
	return imageID(t, e, ref)
}

func imageID(t testing.TB, e *podmantest.Env, ref string) string {
	t.Helper()
	out, err := e.Podman("image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

func removeImage(e *podmantest.Env, ref string) { _, _ = e.Podman("rmi", "-f", ref) }

// countingServer serves files with Range support and counts the requests.
type countingServer struct {
	mu       sync.Mutex
	files    map[string][]byte
	requests []string // "GET /a.tar bytes=…"
	cutFirst int      // >0: the first request dies after this many bytes
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
	cut := s.cutFirst
	s.cutFirst = 0
	data, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if cut > 0 {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, "image.tar", time.Time{}, bytes.NewReader(data))
}

func (s *countingServer) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.requests) }

func manifestEntries(t testing.TB, w *workspace) map[string]image.Entry {
	t.Helper()
	m, err := image.ReadManifest(image.ManifestPath(filepath.Join(w.home, ".local", "share", "sourceos", "agent-machine")))
	if err != nil {
		t.Fatal(err)
	}
	return m.Images
}

func runCLI(t testing.TB, e *podmantest.Env, w *workspace, args ...string) (int, string, string) {
	t.Helper()
	f, out, errOut := sessionFactory(t, e, w, nil)
	code := Run(context.Background(), f, args)
	return code, out.String(), errOut.String()
}

func TestIntegrationImageArchiveSource(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	t.Cleanup(func() { removeImage(e, fetchedRef) })
	archive, sum := saveArchive(t, e, podmantest.Image)
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	srv := &countingServer{files: map[string][]byte{"/v1.tar": data}, cutFirst: len(data) / 3}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	imageProfile(t, w, fetchedRef, fmt.Sprintf("      - archive: %s/v1.tar\n        sha256: \"%s\"\n", ts.URL, sum))

	// 1. The connection drops a third of the way in: nothing is loaded, named or recorded.
	code, _, stderr := runCLI(t, e, w, "agent-machine", "image", "pull", "--profile", w.profile)
	if code != ExitFailure || !strings.Contains(stderr, "interrupted after") {
		t.Fatalf("cut download: exit %d, stderr:\n%s", code, stderr)
	}
	if id := imageID(t, e, fetchedRef); id != "" {
		t.Fatalf("an interrupted download left image %s named %s", id, fetchedRef)
	}
	if _, ok := manifestEntries(t, w)[fetchedRef]; ok {
		t.Fatal("an interrupted download left a manifest entry")
	}

	// 2. Pulling again resumes where it stopped and loads the verified archive.
	code, stdout, stderr := runCLI(t, e, w, "agent-machine", "image", "pull", "--profile", w.profile)
	if code != 0 {
		t.Fatalf("resumed pull: exit %d, stderr:\n%s", code, stderr)
	}
	if got := srv.requests[1]; got != fmt.Sprintf("GET /v1.tar bytes=%d-", len(data)/3) {
		t.Errorf("second request = %q, want a resume from byte %d", got, len(data)/3)
	}
	wantID := imageID(t, e, podmantest.Image)
	if got := imageID(t, e, fetchedRef); got != wantID {
		t.Fatalf("%s is %q, want the archived image %s", fetchedRef, got, wantID)
	}
	entry := manifestEntries(t, w)[fetchedRef]
	if entry.ID != wantID || entry.Source.Kind != "archive" || entry.Source.Digest != "sha256:"+sum || entry.Source.Location != ts.URL+"/v1.tar" {
		t.Errorf("manifest entry = %+v", entry)
	}
	if !strings.Contains(stdout, "fetched from archive") {
		t.Errorf("stdout = %q", stdout)
	}

	// 3. update with the same archive fetches nothing: not one request.
	before := srv.count()
	code, stdout, stderr = runCLI(t, e, w, "agent-machine", "image", "update", "--profile", w.profile)
	if code != 0 || !strings.Contains(stdout, "up to date") || srv.count() != before {
		t.Fatalf("unchanged update: exit %d, %d new requests, stdout %q stderr %q", code, srv.count()-before, stdout, stderr)
	}

	// 4. The profile names a new archive: update fetches it, exactly once.
	otherID := otherImage(t, e, "localhost/sosctl-it/other:2", "2.0.0")
	t.Cleanup(func() { removeImage(e, "localhost/sosctl-it/other:2") })
	archive2, sum2 := saveArchive(t, e, "localhost/sosctl-it/other:2")
	data2, _ := os.ReadFile(archive2)
	srv.mu.Lock()
	srv.files["/v2.tar"] = data2
	srv.mu.Unlock()
	imageProfile(t, w, fetchedRef, fmt.Sprintf("      - archive: %s/v2.tar\n        sha256: \"%s\"\n", ts.URL, sum2))
	before = srv.count()
	code, _, stderr = runCLI(t, e, w, "agent-machine", "image", "update", "--profile", w.profile)
	if code != 0 || srv.count()-before != 1 {
		t.Fatalf("changed update: exit %d, %d requests (want 1), stderr:\n%s", code, srv.count()-before, stderr)
	}
	if got := imageID(t, e, fetchedRef); got != otherID {
		t.Fatalf("after update %s is %s, want %s", fetchedRef, got, otherID)
	}
	if v := manifestEntries(t, w)[fetchedRef].Version; v != "2.0.0" {
		t.Errorf("manifest version = %q, want the image's version label 2.0.0", v)
	}
	before = srv.count()
	if code, stdout, _ = runCLI(t, e, w, "agent-machine", "image", "update", "--profile", w.profile); code != 0 || srv.count() != before || !strings.Contains(stdout, "up to date") {
		t.Fatalf("second update after a change fetched again: exit %d, %d requests", code, srv.count()-before)
	}

	// 5. list shows the entry as present, in JSON.
	code, stdout, _ = runCLI(t, e, w, "agent-machine", "image", "list", "-o", "json")
	var listed struct{ Images []ImageListItem }
	if code != 0 || json.Unmarshal([]byte(stdout), &listed) != nil || len(listed.Images) != 1 ||
		listed.Images[0].Local != "present" || listed.Images[0].ID != otherID {
		t.Fatalf("image list: exit %d, %s", code, stdout)
	}
	// The image under the name is replaced behind our back: list says so.
	if _, err := e.Podman("tag", podmantest.Image, fetchedRef); err != nil {
		t.Fatal(err)
	}
	_, stdout, _ = runCLI(t, e, w, "agent-machine", "image", "list")
	if !strings.Contains(stdout, fetchedRef) || !strings.Contains(stdout, "changed") {
		t.Errorf("list after retagging should say changed:\n%s", stdout)
	}
}

func TestIntegrationImageWrongChecksumIsRefusedBeforeLoad(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	const ref = "localhost/sosctl-it/never:1"
	archive, sum := saveArchive(t, e, podmantest.Image)
	data, _ := os.ReadFile(archive)
	ts := httptest.NewServer(&countingServer{files: map[string][]byte{"/a.tar": data}})
	defer ts.Close()
	wrong := strings.Repeat("0", 64)
	for _, src := range []string{ts.URL + "/a.tar", archive} {
		imageProfile(t, w, ref, fmt.Sprintf("      - archive: %s\n        sha256: \"%s\"\n", src, wrong))
		code, _, stderr := runCLI(t, e, w, "agent-machine", "image", "pull", "--profile", w.profile)
		if code != ExitRefused || !strings.Contains(stderr, "want sha256 "+wrong+", got "+sum) || !strings.Contains(stderr, "nothing was loaded") {
			t.Errorf("%s: exit %d, stderr:\n%s", src, code, stderr)
		}
		if id := imageID(t, e, ref); id != "" {
			t.Errorf("%s: a wrong archive was loaded as %s", src, id)
		}
		if len(manifestEntries(t, w)) != 0 {
			t.Errorf("%s: a refused archive was recorded", src)
		}
	}
	downloads := filepath.Join(w.home, ".local", "share", "sourceos", "agent-machine", "images", "downloads")
	if entries, _ := os.ReadDir(downloads); len(entries) != 0 {
		t.Errorf("refused bytes kept in %s: %v", downloads, entries)
	}
}

// registryCounter wraps go-containerregistry's in-memory registry (the distribution API,
// used as a real peer for Podman's own push and pull) and counts requests by kind.
type registryCounter struct {
	h     http.Handler
	mu    sync.Mutex
	kinds map[string]int
}

func (r *registryCounter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	kind := req.Method + " other"
	switch {
	case strings.Contains(req.URL.Path, "/blobs/"):
		kind = req.Method + " blob"
	case strings.Contains(req.URL.Path, "/manifests/sha256:"):
		kind = req.Method + " manifest-by-digest"
	case strings.Contains(req.URL.Path, "/manifests/"):
		kind = req.Method + " manifest-by-tag"
	}
	r.mu.Lock()
	r.kinds[kind]++
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

func (r *registryCounter) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.kinds {
		out[k] = v
	}
	return out
}

func TestIntegrationImageRegistrySource(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	t.Cleanup(func() { removeImage(e, fetchedRef) })
	reg := &registryCounter{h: registry.New(registry.Logger(log.New(io.Discard, "", 0))), kinds: map[string]int{}}
	ts := httptest.NewServer(reg)
	defer ts.Close()
	remote := strings.TrimPrefix(ts.URL, "http://") + "/sosctl/agent:1"
	push := func(src string) {
		t.Helper()
		if out, err := e.Podman("push", "--tls-verify=false", src, remote); err != nil {
			t.Fatalf("podman push: %v: %s", err, out)
		}
	}
	push(podmantest.Image)
	imageProfile(t, w, fetchedRef, fmt.Sprintf("      - registry: %s\n        tlsVerify: false\n      - archive: https://archive.invalid/never.tar\n        sha256: \"%s\"\n", remote, strings.Repeat("1", 64)))

	code, _, stderr := runCLI(t, e, w, "agent-machine", "image", "pull", "--profile", w.profile)
	if code != 0 {
		t.Fatalf("pull: exit %d, stderr:\n%s", code, stderr)
	}
	// Not a terminal: progress is the label, then the service's steps as indented lines.
	if !strings.Contains(stderr, "Pulling "+remote+" (sha256:") || !strings.Contains(stderr, "\n  Writing manifest to image destination") {
		t.Errorf("pull progress:\n%s", stderr)
	}
	first := manifestEntries(t, w)[fetchedRef]
	if first.Source.Kind != "registry" || first.Source.Location != remote || !strings.HasPrefix(first.Source.Digest, "sha256:") || imageID(t, e, fetchedRef) != first.ID {
		t.Fatalf("manifest entry after pull = %+v", first)
	}

	// Unchanged: update asks for the tag's digest and downloads nothing.
	before := reg.snapshot()
	code, stdout, stderr := runCLI(t, e, w, "agent-machine", "image", "update", "--profile", w.profile)
	after := reg.snapshot()
	if code != 0 || !strings.Contains(stdout, "up to date") {
		t.Fatalf("unchanged update: exit %d, stdout %q stderr %q", code, stdout, stderr)
	}
	for _, k := range []string{"GET blob", "GET manifest-by-digest", "GET manifest-by-tag"} {
		if after[k] != before[k] {
			t.Errorf("unchanged update made %d %s requests, want none", after[k]-before[k], k)
		}
	}

	// The tag moves to another image: update pulls it, once.
	otherID := otherImage(t, e, "localhost/sosctl-it/other:3", "3.0.0")
	t.Cleanup(func() { removeImage(e, "localhost/sosctl-it/other:3") })
	push("localhost/sosctl-it/other:3")
	before = reg.snapshot()
	code, _, stderr = runCLI(t, e, w, "agent-machine", "image", "update", "--profile", w.profile)
	after = reg.snapshot()
	if code != 0 || imageID(t, e, fetchedRef) != otherID {
		t.Fatalf("changed update: exit %d, image %s (want %s), stderr:\n%s", code, imageID(t, e, fetchedRef), otherID, stderr)
	}
	if n := after["GET manifest-by-digest"] - before["GET manifest-by-digest"]; n < 1 {
		t.Errorf("changed update fetched the manifest %d times by digest, want the new digest pulled", n)
	}
	second := manifestEntries(t, w)[fetchedRef]
	if second.Source.Digest == first.Source.Digest || second.ID != otherID || second.Version != "3.0.0" {
		t.Errorf("manifest after the change = %+v", second)
	}
	// --dry-run says it would fetch and changes nothing.
	before = reg.snapshot()
	code, stdout, _ = runCLI(t, e, w, "agent-machine", "image", "pull", "--profile", w.profile, "--dry-run")
	after = reg.snapshot()
	if code != 0 || !strings.HasPrefix(stdout, "dry run: would fetch "+fetchedRef+" from registry "+remote) || after["GET blob"] != before["GET blob"] {
		t.Errorf("dry-run pull: exit %d, stdout %q, blob requests %d", code, stdout, after["GET blob"]-before["GET blob"])
	}
}

func TestIntegrationPinnedDigestMismatchIsRefused(t *testing.T) {
	e := podmantest.Need(t)
	pinned := "sha256:" + strings.Repeat("0", 64)
	w := newWorkspace(t, e, "")
	body, _ := os.ReadFile(w.profile)
	body = bytes.Replace(body, []byte("    ref: "+podmantest.Image+"\n"), []byte("    ref: "+podmantest.Image+"\n    digest: "+pinned+"\n"), 1)
	if err := os.WriteFile(w.profile, body, 0o644); err != nil {
		t.Fatal(err)
	}
	local, err := e.Podman("image", "inspect", "--format", "{{.Digest}}", podmantest.Image)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, e, w, "agent-machine", "shell", "--profile", w.profile, "--repo", w.repo, "--", "true")
	if code != ExitRefused {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitRefused, stderr)
	}
	for _, want := range []string{pinned, strings.TrimSpace(local)} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not show %s:\n%s", want, stderr)
		}
	}
	if c := sessionContainers(t, e); len(c) != 0 {
		t.Errorf("containers created for a refused image: %v", c)
	}
}
