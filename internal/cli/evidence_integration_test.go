package cli

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/cosigntest"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// gitRepo makes the workspace's repository a git repository with one commit.
func gitRepo(t *testing.T, w *workspace) string {
	t.Helper()
	for _, args := range [][]string{{"init", "-q"}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "base"}} {
		cmd := exec.Command("git", append([]string{"-C", w.repo, "-c", "safe.directory=*"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command("git", "-C", w.repo, "-c", "safe.directory=*", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		chownTree(t, w.repo, 1000, 1000)
	}
	return strings.TrimSpace(string(out))
}

func bundleFrom(t *testing.T, stderr string) string {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if dir, ok := strings.CutPrefix(line, "evidence: "); ok {
			return dir
		}
	}
	t.Fatalf("no 'evidence:' line in stderr:\n%s", stderr)
	return ""
}

func verifyBundle(t *testing.T, w *workspace, dir string) *evidence.Predicate {
	t.Helper()
	pub := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys", "evidence.pub")
	f, out, errOut := testFactory(t)
	if code := run(t, f, "am", "evidence", "verify", dir, "--key", pub); code != 0 {
		t.Fatalf("evidence verify: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out.String(), "session log: entry ") {
		t.Fatalf("evidence verify does not place the bundle in the session log:\n%s", out)
	}
	cosignVerify(t, dir, pub)
	st, err := evidence.ReadUnverified(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Predicate
}

// cosignVerify checks the bundle with stock cosign and the public key pub (when cosign is
// installed: CI installs it).
func cosignVerify(t *testing.T, dir, pub string) {
	t.Helper()
	if ran, out, err := cosignAccepts(t, dir, pub); ran && err != nil {
		t.Fatalf("cosign rejects the session's bundle with %s: %v\n%s", pub, err, out)
	}
}

// cosignAccepts runs stock cosign on the bundle with the public key pub; ran is false when
// cosign is not installed.
func cosignAccepts(t *testing.T, dir, pub string) (ran bool, out []byte, err error) {
	t.Helper()
	cosign := cosigntest.Binary(t)
	if cosign == "" {
		return false, nil, nil
	}
	out, err = exec.Command(cosign, "verify-blob-attestation", "--key", pub, "--bundle", filepath.Join(dir, evidence.BundleFile),
		"--type", evidence.PredicateType, "--insecure-ignore-tlog", filepath.Join(dir, "artifacts", "session.log")).CombinedOutput()
	return true, out, err
}

func TestIntegrationEvidenceMatchesReality(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	head := gitRepo(t, w)
	imageID, _ := e.Podman("image", "inspect", "--format", "{{.ID}}", podmantest.Image)
	imageDigest, _ := e.Podman("image", "inspect", "--format", "{{.Digest}}", podmantest.Image)

	t.Run("run that changes the tree", func(t *testing.T) {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "keycheck", "--repo", w.repo, "--secret", "api-key", "--", "ignored"); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		p := verifyBundle(t, w, bundleFrom(t, errOut.String()))
		checks := map[string][2]string{
			"git commit":    {p.Git.Before.Commit, head},
			"image id":      {p.Image.ID, strings.TrimSpace(imageID)},
			"image digest":  {p.Image.Digest, strings.TrimSpace(imageDigest)},
			"outcome":       {p.Session.Outcome, "succeeded"},
			"secret names":  {strings.Join(p.Secrets, ","), "api-key"},
			"workspace":     {p.Mounts[0].Source + "->" + p.Mounts[0].Target, w.repo + "->/workspace"},
			"masking rule":  {p.Environment.MaskingRule, evidence.MaskingRule},
			"masked values": {p.Environment.Variables["API_TOKEN"], "***"},
		}
		for name, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s = %q, want %q", name, c[0], c[1])
			}
		}
		if p.Session.ExitCode == nil || *p.Session.ExitCode != 0 {
			t.Errorf("exit code = %v", p.Session.ExitCode)
		}
		assertNoSecretIn(t, bundleFrom(t, errOut.String()))
	})
	t.Run("the tool's version and binary digest are measured in the image", func(t *testing.T) {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "run", "--tool", "codex", "--repo", w.repo); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		p := verifyBundle(t, w, bundleFrom(t, errOut.String()))
		sum := sha256.Sum256([]byte(podmantest.StubTool))
		if p.Tool.Version != "codex 0.0.0-stub (sourceosctl test image)" || p.Tool.BinaryDigest != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("tool = %+v", p.Tool)
		}
	})
	t.Run("shell -- false is recorded as a tool failure", func(t *testing.T) {
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", "echo changed > /workspace/new.txt; false"); code != 1 {
			t.Fatalf("exit %d, want 1: %s", code, errOut)
		}
		dir := bundleFrom(t, errOut.String())
		p := verifyBundle(t, w, dir)
		if p.Session.Outcome != "tool-failed" || p.Session.ExitCode == nil || *p.Session.ExitCode != 1 {
			t.Errorf("session = %+v", p.Session)
		}
		// A git repository is a copy-mode session: the user's tree is as it was, and what the
		// tool wrote (before failing) is on the session's branch.
		if p.Git.After.Dirty {
			t.Error("the session wrote in its copy, but the user's tree is recorded dirty")
		}
		if ws := p.Git.Workspace; ws == nil || ws.Mode != "copy" || ws.Result == nil || !ws.Result.Changed || len(ws.Result.Commits) != 1 {
			t.Errorf("workspace = %+v: want the copy's branch with the leftover commit", ws)
		}
		if _, err := os.Stat(filepath.Join(dir, "artifacts", "container-inspect.json")); err != nil {
			t.Error("no container inspect artifact")
		}
		// The recorded mounts are the ones Podman reported for the container.
		raw, _ := os.ReadFile(filepath.Join(dir, "artifacts", "container-inspect.json"))
		var inspect struct {
			Mounts []struct{ Source, Destination string }
		}
		_ = json.Unmarshal(raw, &inspect)
		// Every mount Podman reported is recorded (Podman 4.3 does not report overlay
		// volumes: the copy's overlay is checked from inside, by the helper).
		for _, m := range inspect.Mounts {
			if m.Destination != container.HelperTarget && !slices.ContainsFunc(p.Mounts, func(r evidence.Mount) bool { return r.Source == m.Source && r.Target == m.Destination }) {
				t.Errorf("inspect mount %+v is not in the predicate's %+v", m, p.Mounts)
			}
		}
		if len(p.Mounts) == 0 || p.Mounts[0].Source != w.repo || p.Mounts[0].Target != "/workspace" || !slices.Contains(p.Mounts[0].Options, "overlay") {
			t.Errorf("the workspace's overlay is not the first recorded mount: %+v", p.Mounts)
		}
		if p.Checks == nil || p.Checks.Inside != "passed" {
			t.Errorf("checks = %+v: the overlay is verified from inside", p.Checks)
		}
	})
	t.Run("an interrupted session is recorded", func(t *testing.T) {
		cmd := cliProcess(t, e, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sleep", "300")
		var stderr safeBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForSession(t, e)
		signalAndWait(t, cmd, syscall.SIGINT, stderr.String)
		p := verifyBundle(t, w, bundleFrom(t, stderr.String()))
		if !p.Session.Interrupted || p.Session.Outcome != "interrupted" || p.Session.Cause != "SIGINT" {
			t.Errorf("session = %+v", p.Session)
		}
	})
	t.Run("a Podman failure after the policy allowed the session is recorded", func(t *testing.T) {
		missing := filepath.Join(w.home, "missing-image.yaml")
		body, _ := os.ReadFile(w.profile)
		if err := os.WriteFile(missing, []byte(strings.Replace(string(body), podmantest.Image, "localhost:1/sourceosctl-test/absent:1", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		f, _, errOut := sessionFactory(t, e, w, nil)
		if code := run(t, f, "--profile", missing, "am", "shell", "--repo", w.repo, "--", "true"); code != ExitMissing {
			t.Fatalf("exit %d, want %d: %s", code, ExitMissing, errOut)
		}
		if !strings.Contains(errOut.String(), "image localhost:1/sourceosctl-test/absent:1: not present locally and the pull failed") {
			t.Errorf("stderr does not name the cause:\n%s", errOut)
		}
		p := verifyBundle(t, w, bundleFrom(t, errOut.String()))
		if p.Session.Outcome != "failed" || p.Session.Ran || p.Session.ExitCode != nil || !strings.Contains(p.Session.Error, "pull failed") {
			t.Errorf("session = %+v", p.Session)
		}
		if names := sessionContainers(t, e); len(names) != 0 {
			t.Errorf("containers left: %v", names)
		}
	})
	t.Run("inspect lists them newest first", func(t *testing.T) {
		f, out, errOut := testFactory(t)
		evDir := w.evidenceDir()
		if code := run(t, f, "am", "evidence", "inspect", evDir); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) < 6 || !strings.HasPrefix(lines[1], "UNVERIFIED") || !strings.Contains(lines[1], "failed") || !strings.Contains(lines[2], "interrupted") {
			t.Errorf("inspect table:\n%s", out)
		}
	})
	t.Run("the session log holds every session; a deleted bundle is named", func(t *testing.T) {
		bundles, err := evidence.List(w.evidenceDir())
		if err != nil || len(bundles) < 5 {
			t.Fatalf("bundles: %v %v", bundles, err)
		}
		if code, out := verifyLog(t, w); code != 0 || !strings.Contains(out, fmt.Sprintf("%d entries under the latest signed checkpoint", len(bundles))) {
			t.Fatalf("log verify: exit %d\n%s", code, out)
		}
		pub := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys", "evidence.pub")
		f, kept, errOut := testFactory(t)
		if code := run(t, f, "am", "evidence", "log", "checkpoint", w.evidenceDir(), "--key", pub); code != 0 {
			t.Fatalf("log checkpoint: exit %d: %s", code, errOut)
		}
		keptFile := filepath.Join(t.TempDir(), "kept.checkpoint")
		if err := os.WriteFile(keptFile, kept.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		victim := bundles[len(bundles)/2]
		aside := filepath.Join(t.TempDir(), "aside")
		if err := os.Rename(victim, aside); err != nil {
			t.Fatal(err)
		}
		code, out := verifyLog(t, w, "--since", keptFile)
		if code != 1 || !strings.Contains(out, "DELETED") || !strings.Contains(out, filepath.Base(victim)) || !strings.Contains(out, "the log still extends it") {
			t.Errorf("a deleted bundle: exit %d\n%s", code, out)
		}
		if err := os.Rename(aside, victim); err != nil {
			t.Fatal(err)
		}
		f, jsonOut, _ := testFactory(t)
		if code := run(t, f, "am", "evidence", "log", "verify", w.evidenceDir(), "--key", pub, "--since", keptFile, "-o", "json"); code != 0 {
			t.Fatalf("log verify -o json: exit %d\n%s", code, jsonOut)
		}
		var res struct {
			Size     int
			Since    struct{ Consistent bool }
			Problems []any
		}
		if err := json.Unmarshal(jsonOut.Bytes(), &res); err != nil || res.Size != len(bundles) || !res.Since.Consistent || len(res.Problems) != 0 {
			t.Errorf("log verify -o json: %v %+v\n%s", err, res, jsonOut)
		}
	})
}

// verifyLog runs `evidence log verify` on the workspace's evidence directory with its key.
func verifyLog(t *testing.T, w *workspace, args ...string) (code int, out string) {
	t.Helper()
	pub := filepath.Join(w.home, ".config", "sourceos", "agent-machine", "keys", "evidence.pub")
	f, stdout, errOut := testFactory(t)
	code = run(t, f, append([]string{"am", "evidence", "log", "verify", w.evidenceDir(), "--key", pub}, args...)...)
	return code, stdout.String() + errOut.String()
}

func (w *workspace) evidenceDir() string {
	return filepath.Join(w.home, ".local", "state", "sourceos", "agent-machine", "evidence")
}

func assertNoSecretIn(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), testSecretValue) || strings.Contains(decodedPayloadOf(b), testSecretValue) {
				t.Errorf("%s contains the secret's value", p)
			}
		}
		return nil
	})
}

func decodedPayloadOf(b []byte) string {
	var env evidence.Envelope
	if json.Unmarshal(b, &env) != nil {
		return ""
	}
	return string(mustBase64(env.Payload))
}

func mustBase64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}
