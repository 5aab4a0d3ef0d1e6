package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
)

// fakeBuildEngine keeps images by name in memory and records calls.
type fakeBuildEngine struct {
	images  map[string]container.Image
	calls   []string
	failTag string // a build whose Containerfile args contain this fails
}

func (f *fakeBuildEngine) Image(_ context.Context, ref string) (container.Image, bool, error) {
	img, ok := f.images[ref]
	return img, ok, nil
}
func (f *fakeBuildEngine) PullFrom(context.Context, string, bool, io.Writer) error { return nil }
func (f *fakeBuildEngine) RemoteDigest(context.Context, string, bool) (string, error) {
	return "", nil
}
func (f *fakeBuildEngine) Load(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeBuildEngine) Tag(_ context.Context, src, ref string) error {
	f.calls = append(f.calls, "tag "+short(ref))
	f.images[ref] = f.images[src]
	return nil
}
func (f *fakeBuildEngine) Untag(_ context.Context, ref string) error {
	f.calls = append(f.calls, "untag "+short(ref))
	delete(f.images, ref)
	return nil
}
func (f *fakeBuildEngine) RemoveImage(_ context.Context, ref string) error {
	f.calls = append(f.calls, "rm "+short(ref))
	delete(f.images, ref)
	return nil
}
func (f *fakeBuildEngine) Import(_ context.Context, r io.Reader, ref string, changes []string) (string, error) {
	io.Copy(io.Discard, r)
	f.calls = append(f.calls, "import")
	f.images[ref] = container.Image{ID: "rootfs", Labels: map[string]string{InputsLabel: strings.SplitN(strings.TrimPrefix(changes[0], "LABEL "+InputsLabel+"="), " ", 2)[0]}}
	return "rootfs", nil
}
func (f *fakeBuildEngine) Build(_ context.Context, b container.Build) (string, error) {
	f.calls = append(f.calls, "build "+filepath.Base(filepath.Dir(b.Containerfile))+" FROM "+short(b.Args["BASE"]))
	if f.failTag != "" && b.Args["PACKAGES"] == f.failTag {
		f.images[b.Tag] = container.Image{ID: "half"} // the server got as far as naming it
		return "", errors.New("RUN failed")
	}
	f.images[b.Tag] = container.Image{ID: "id-" + b.Args["BASE"], Labels: b.Labels}
	return "id", nil
}

// short drops the random part of temporary names.
func short(ref string) string {
	if strings.HasPrefix(ref, "localhost/sourceos/build-tmp:") {
		return "tmp"
	}
	return strings.TrimPrefix(ref, "localhost/sourceos/")
}

func testBuilder(t *testing.T, e *fakeBuildEngine, euid int) *Builder {
	return &Builder{Engine: e, ManifestPath: filepath.Join(t.TempDir(), "manifest.json"), WorkDir: t.TempDir(), Out: &bytes.Buffer{},
		Geteuid: func() int { return euid }, LookPath: exec.LookPath, ReadFile: func(string) ([]byte, error) { return nil, errors.New("none") }}
}

func actionsOf(p *BuildPlan) string {
	var a []string
	for _, st := range p.Steps {
		a = append(a, st.Action)
	}
	return strings.Join(a, ",")
}

func TestBuildPlanReusesOnlyUnchangedStages(t *testing.T) {
	e := &fakeBuildEngine{images: map[string]container.Image{"docker.io/library/debian:bookworm-slim": {ID: "deb"}}}
	b := testBuilder(t, e, 1000)
	req := BuildRequest{Base: "docker.io/library/debian:bookworm-slim"}
	plan, err := b.Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := actionsOf(plan); got != "reuse,build,build" {
		t.Fatalf("first plan = %s", got)
	}
	entry, err := b.Run(context.Background(), plan, "v")
	if err != nil {
		t.Fatal(err)
	}
	if entry.Source.Kind != KindBuild || entry.Source.Location != "base docker.io/library/debian:bookworm-slim" || entry.Ref != DefaultRef {
		t.Errorf("manifest entry = %+v", entry)
	}
	if got := strings.Join(e.calls, " "); got != "build . FROM docker.io/library/debian:bookworm-slim tag agent-base:bookworm untag tmp build . FROM agent-base:bookworm tag agent-workspace:latest untag tmp" {
		t.Errorf("calls = %s", got)
	}
	for _, tc := range []struct {
		name string
		req  BuildRequest
		want string
	}{
		{"nothing changed", req, "reuse,reuse,reuse"},
		{"a CA certificate added rebuilds base and tools", BuildRequest{Base: req.Base, CACerts: []string{"ca.pem"}}, "reuse,build,build"},
		{"a new tool version rebuilds only the tools", BuildRequest{Base: req.Base, Catalog: func() *Catalog { c := DefaultCatalog(); c.Tools["codex"] = "9.9.9"; return c }()}, "reuse,reuse,build"},
		{"--force", BuildRequest{Base: req.Base, Force: true}, "reuse,build,build"},
	} {
		b.ReadFile = func(string) ([]byte, error) { return []byte(testCert), nil }
		plan, err := b.Plan(context.Background(), tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := actionsOf(plan); got != tc.want {
			t.Errorf("%s: actions = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestBuildPlanIDE: --ide adds one stage on top of the image it extends, which keeps its own
// name and is reused; only the IDE's pins rebuild it.
func TestBuildPlanIDE(t *testing.T) {
	e := &fakeBuildEngine{images: map[string]container.Image{"docker.io/library/debian:bookworm-slim": {ID: "deb"}}}
	b := testBuilder(t, e, 1000)
	base := "docker.io/library/debian:bookworm-slim"
	plan, err := b.Plan(context.Background(), BuildRequest{Base: base})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), plan, "v"); err != nil {
		t.Fatal(err)
	}
	goStack, err := DefaultCatalog().Resolve([]string{"go"})
	if err != nil {
		t.Fatal(err)
	}
	tags := func(p *BuildPlan) string {
		var out []string
		for _, st := range p.Steps[1:] {
			out = append(out, st.Name+"="+short(st.Tag))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name       string
		req        BuildRequest
		actions    string
		tags, ref  string
		ideVersion string
	}{
		{"on the default image", BuildRequest{Base: base, IDE: true}, "reuse,reuse,reuse,build",
			"base=agent-base:bookworm tools=agent-workspace:latest ide=agent-workspace:ide", "localhost/sourceos/agent-workspace:ide", "4.89.1"},
		{"on a stack image", BuildRequest{Base: base, Stacks: goStack, IDE: true}, "reuse,reuse,reuse,build,build",
			"base=agent-base:bookworm tools=agent-workspace:latest stacks=agent-workspace:go-1.19 ide=agent-workspace:go-1.19_ide", "localhost/sourceos/agent-workspace:go-1.19_ide", "4.89.1"},
		{"with --tag", BuildRequest{Base: base, IDE: true, Ref: "localhost/team/ide:1"}, "reuse,reuse,reuse,build",
			"base=agent-base:bookworm tools=agent-workspace:latest ide=localhost/team/ide:1", "localhost/team/ide:1", "4.89.1"},
	} {
		plan, err := b.Plan(context.Background(), tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := actionsOf(plan); got != tc.actions || tags(plan) != tc.tags || plan.Ref != tc.ref {
			t.Errorf("%s: actions %s, tags %s, ref %s", tc.name, got, tags(plan), plan.Ref)
		}
		last := plan.Steps[len(plan.Steps)-1]
		if !strings.Contains(last.Command[0], "CODE_SERVER_VERSION="+tc.ideVersion) || !strings.Contains(last.Command[0], "ide/Containerfile") {
			t.Errorf("%s: the IDE stage's command %q", tc.name, last.Command[0])
		}
	}
	plan, err = b.Plan(context.Background(), BuildRequest{Base: base, IDE: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), plan, "v"); err != nil {
		t.Fatal(err)
	}
	newer := DefaultCatalog()
	newer.IDE.CodeServer = "4.89.2"
	for _, tc := range []struct {
		name, want string
		req        BuildRequest
	}{
		{"built: reused", "reuse,reuse,reuse,reuse", BuildRequest{Base: base, IDE: true}},
		{"a new code-server rebuilds only the IDE", "reuse,reuse,reuse,build", BuildRequest{Base: base, IDE: true, Catalog: newer}},
		{"without --ide the IDE's pins change nothing", "reuse,reuse,reuse", BuildRequest{Base: base, Catalog: newer}},
	} {
		plan, err := b.Plan(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := actionsOf(plan); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestFailedStageLeavesNoNameAndNoRecord(t *testing.T) {
	e := &fakeBuildEngine{images: map[string]container.Image{"debian:x": {ID: "deb"}}, failTag: "golang-go"}
	b := testBuilder(t, e, 0)
	sel, _ := DefaultCatalog().Resolve([]string{"go"})
	plan, err := b.Plan(context.Background(), BuildRequest{Base: "debian:x", Stacks: sel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background(), plan, "v"); err == nil || !strings.Contains(err.Error(), "stacks stage: RUN failed") {
		t.Fatalf("err = %v", err)
	}
	for name := range e.images {
		if strings.Contains(name, "build-tmp") || strings.HasSuffix(name, ":go-1.19") {
			t.Errorf("left behind: %s", name)
		}
	}
	if m, _ := ReadManifest(b.ManifestPath); len(m.Images) != 0 {
		t.Errorf("a failed build was recorded: %v", m.Images)
	}
}

func TestDebootstrapNeedsRootAndSaysHowElse(t *testing.T) {
	e := &fakeBuildEngine{images: map[string]container.Image{}}
	b := testBuilder(t, e, 1000)
	plan, err := b.Plan(context.Background(), BuildRequest{Mirror: "http://mirror.example/debian"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.Steps[0].Command[0], "debootstrap --variant=minbase --include=ca-certificates,passwd bookworm ROOTFS http://mirror.example/debian") {
		t.Errorf("dry-run command = %q", plan.Steps[0].Command)
	}
	_, err = b.Run(context.Background(), plan, "v")
	var in *InputError
	if !errors.As(err, &in) || !strings.Contains(in.Fix, "--base docker.io/library/debian:bookworm-slim") || !strings.Contains(in.Fix, "image build --rootfs /tmp/rootfs.tar") {
		t.Fatalf("err = %v (fix %q)", err, hintOf(err))
	}
	if len(e.calls) != 0 {
		t.Errorf("calls before refusing: %v", e.calls)
	}
}

func TestCACertsMustBeCertificates(t *testing.T) {
	e := &fakeBuildEngine{images: map[string]container.Image{}}
	b := testBuilder(t, e, 0)
	for content, want := range map[string]string{
		"hello":           "no PEM certificate found",
		testKeyPEM:        "holds a PRIVATE KEY block",
		testCert + "junk": "",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n": "certificate 1:",
	} {
		b.ReadFile = func(string) ([]byte, error) { return []byte(content), nil }
		_, err := b.Plan(context.Background(), BuildRequest{Base: "x", CACerts: []string{"c.pem"}})
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("content %.10q: err = %v, want %q", content, err, want)
		}
	}
}

var testCert = func() string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

const testKeyPEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"

// TestARootFilesystemMustBeEnterable: a root filesystem whose top directory is private would
// become an image whose / no session user can enter (rootless storage keeps the mode): the
// build refuses it, for a directory and for a tar whose first entry is "./".
func TestARootFilesystemMustBeEnterable(t *testing.T) {
	dir := t.TempDir()
	tarOf := func(name string, mode int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: mode})
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./bin/", Mode: 0o755})
		_ = tw.Close()
		_ = f.Close()
		return p
	}
	private := filepath.Join(dir, "private")
	open := filepath.Join(dir, "open")
	for _, d := range []string{private, open} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(private, 0o700)
	for path, ok := range map[string]bool{
		private: false, open: true,
		tarOf("private.tar", 0o700): false, tarOf("open.tar", 0o755): true,
	} {
		b := testBuilder(t, &fakeBuildEngine{images: map[string]container.Image{}}, 1000)
		_, err := b.Plan(context.Background(), BuildRequest{Rootfs: path})
		var in *InputError
		switch {
		case ok && err != nil:
			t.Errorf("%s: %v", path, err)
		case !ok && (!errors.As(err, &in) || !strings.Contains(err.Error(), "it becomes the image's /") || !strings.HasPrefix(in.Fix, "chmod 755")):
			t.Errorf("%s: error %v, want a refusal with the chmod fix", path, err)
		}
	}
}

func TestABuildFromARepositorysDockerfilePutsTheToolsOnIt(t *testing.T) {
	dir := t.TempDir()
	dockerfile := filepath.Join(dir, ".devcontainer", "Dockerfile")
	if err := os.MkdirAll(filepath.Dir(dockerfile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dockerfile, []byte("FROM debian:bookworm\nRUN true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &fakeBuildEngine{images: map[string]container.Image{}}
	b := testBuilder(t, e, 1000)
	req := BuildRequest{Dockerfile: dockerfile, Context: dir, BuildArgs: map[string]string{"VARIANT": "18"}, Ref: "localhost/sourceos/devcontainer-app:latest"}
	plan, err := b.Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	first := plan.Steps[0]
	if got := actionsOf(plan); got != "build,build,build" || plan.From != "dockerfile "+dockerfile || !strings.Contains(first.Command[0], "--build-arg VARIANT=18") {
		t.Fatalf("plan %s from %q, first %v", got, plan.From, first.Command)
	}
	if _, err := b.Run(context.Background(), plan, "v"); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(e.calls, " ")
	if !strings.HasPrefix(calls, "build .devcontainer FROM  tag "+short(first.Tag)) || !strings.Contains(calls, "build . FROM "+short(first.Tag)+" tag agent-base:bookworm") {
		t.Errorf("the base stage is not built on the Dockerfile's image: %s", calls)
	}
	// The Dockerfile's context is not hashed: it is built again every time.
	if plan, err = b.Plan(context.Background(), req); err != nil || plan.Steps[0].Action != "build" {
		t.Errorf("second plan: %v %v", actionsOf(plan), err)
	}
	for _, bad := range []BuildRequest{{Dockerfile: dockerfile, Base: "debian"}, {Dockerfile: filepath.Join(dir, "none")}, {Dockerfile: dockerfile, Context: filepath.Join(dir, "none")}} {
		var in *InputError
		if _, err := b.Plan(context.Background(), bad); !errors.As(err, &in) {
			t.Errorf("%+v: %v, want an input error", bad, err)
		}
	}
}
