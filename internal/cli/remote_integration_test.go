package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationASessionOverSSHOnAnotherUsersService runs a full session against a Podman
// service reached over ssh:// — Debian's sshd on a loopback port, logging in as the
// unprivileged test user with a key, forwarding to that user's rootless service — the way a
// remote build host is used. Nothing of this host is mounted there: the repository's files
// travel to a volume, the helper to the programs volume; the agent's changes come back as a
// patch that applies; the bundle verifies here and carries the patch; nothing is left on the
// service. What cannot work over ssh:// is refused with the reason.
func TestIntegrationASessionOverSSHOnAnotherUsersService(t *testing.T) {
	user := os.Getenv("SOURCEOSCTL_TEST_USER")
	switch {
	case os.Getuid() != 0 && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: this test starts sshd for SOURCEOSCTL_TEST_USER")
	case os.Getuid() != 0:
		t.Skip("needs root, to start sshd for SOURCEOSCTL_TEST_USER")
	case user == "" && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER (see scripts/ci-test-user.sh) so the remote path is tested")
	case user == "":
		t.Skip("set SOURCEOSCTL_TEST_USER to an unprivileged user with subuid ranges")
	}
	podmantest.Need(t)
	re, err := podmantest.StartAs(user)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	sshd := podmantest.StartSSHD(t, user)

	home := t.TempDir()
	repo := filepath.Join(home, "app")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for name, body := range map[string]string{"README": "hello\n", "gone.txt": "bye\n", ".gitignore": ".env\nbuild/\n", ".env": "SECRET=canary-remote-4f1e\n"} {
		writeFile(t, filepath.Join(repo, name), body)
	}
	gitIn("init", "-q")
	gitIn("add", "README", "gone.txt", ".gitignore")
	gitIn("commit", "-qm", "base")
	writeFile(t, filepath.Join(repo, "README"), "hello\nuncommitted\n") // the session sees what the user sees

	enforce := "required"
	if !isCgroup2() {
		enforce = "best-effort" // rootless Podman on cgroups v1 cannot apply limits
	}
	profile := filepath.Join(home, "remote.yaml")
	writeFile(t, profile, fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: remote}\nspec:\n  host: {os: linux}\n  image: {ref: %s}\n  network: none\n  resources: {memoryMiB: 256, pids: 64, enforce: %s}\n", podmantest.Image, enforce))
	uri := sshd.URI(re.Socket)
	// A named connection, as `podman system connection add` records one (written directly:
	// Podman 4.3's add rewrites the socket's path), with its own identity.
	conf := filepath.Join(home, "containers.conf")
	writeFile(t, conf, fmt.Sprintf("[engine.service_destinations.buildhost]\nuri = %q\nidentity = %q\n", uri, sshd.Key))
	named := false
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Dir = repo
		cmd.Env = []string{asCLI + "=1", "HOME=" + home, "PATH=" + os.Getenv("PATH"),
			"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".state"), "XDG_DATA_HOME=" + filepath.Join(home, ".data")}
		if named {
			cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+conf) // the key comes from the connection
		} else {
			cmd.Env = append(cmd.Env, "CONTAINER_SSHKEY="+sshd.Key)
		}
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	out, errOut, code := cli("--profile", profile, "am", "shell", "--connection", uri, "--repo", repo, "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, errOut)
	}
	var plan struct {
		Workspace struct{ Mode, Volume string }
		Container struct {
			User   string
			Mounts []struct{ Source string }
		}
		Helper *struct{ Volume string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Workspace.Mode != "volume" || plan.Container.User != "1000:1000" || len(plan.Container.Mounts) != 0 || plan.Helper == nil || plan.Helper.Volume == "" {
		t.Errorf("plan: workspace %+v, user %s, host mounts %v, helper %+v", plan.Workspace, plan.Container.User, plan.Container.Mounts, plan.Helper)
	}

	script := `set -e
id -u
cat /workspace/README
test ! -e /workspace/.env && echo no-env
test ! -e /workspace/.git && echo no-git
echo agent >> /workspace/README
echo new > /workspace/added.txt
rm /workspace/gone.txt
mkdir -p /workspace/build && echo ignored > /workspace/build/out.o
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status`
	out, errOut, code = cli("--profile", profile, "am", "shell", "--connection", uri, "--repo", repo, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("session over ssh://: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"1000\n", "hello\nuncommitted\n", "no-env\n", "no-git\n", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(out, want) {
			t.Errorf("inside: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "canary-remote-4f1e") {
		t.Error("the ignored .env reached the remote service")
	}
	bundle := bundleFrom(t, errOut)
	var patchFile string
	for _, line := range strings.Split(errOut, "\n") {
		if rest, ok := strings.CutPrefix(line, "  apply:  git -C "+repo+" apply "); ok {
			patchFile = rest
		}
	}
	patch, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatalf("no patch reported (%v):\n%s", err, errOut)
	}
	for _, want := range []string{"+++ b/README", "+agent", "+++ b/added.txt", "deleted file mode", "--- a/gone.txt"} {
		if !strings.Contains(string(patch), want) {
			t.Errorf("patch has no %q:\n%s", want, patch)
		}
	}
	if strings.Contains(string(patch), "build/out.o") {
		t.Errorf("an ignored build output is in the patch:\n%s", patch)
	}
	signed, err := os.ReadFile(filepath.Join(bundle, "artifacts", "workspace.patch"))
	if err != nil || string(signed) != string(patch) {
		t.Errorf("the bundle's workspace.patch is not the patch (%v)", err)
	}
	if out, errOut, code = cli("am", "evidence", "verify", bundle, "--key", filepath.Join(home, ".config", "sourceos", "agent-machine", "keys", "evidence.pub"), "--strict"); code != 0 {
		t.Errorf("evidence verify: exit %d\n%s%s", code, out, errOut)
	}
	st, err := evidence.ReadUnverified(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Predicate.Checks; c == nil || c.Inspect != "as-planned" || c.Inside != "passed" {
		t.Errorf("checks: %+v (want the inspect comparison and the shipped helper's check)", c)
	}
	if w := st.Predicate.Git.Workspace; w == nil || w.Mode != "volume" {
		t.Errorf("the record's workspace: %+v", w)
	}
	if out, err := exec.Command("git", "-C", repo, "apply", "--check", patchFile).CombinedOutput(); err != nil {
		t.Errorf("the patch does not apply to the repository: %v\n%s", err, out)
	}
	if vols, _ := re.Podman("volume", "ls", "--format", "{{.Name}}"); strings.Contains(vols, "sosctl-repo-") {
		t.Errorf("the workspace volume was left on the service: %s", vols)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "README")); string(b) != "hello\nuncommitted\n" {
		t.Errorf("the session changed the repository on this host: %q", b)
	}

	// The same service by name: the connection's URI and identity.
	named = true
	if out, errOut, code = cli("--profile", profile, "am", "shell", "--connection", "buildhost", "--repo", repo, "--", "cat", "/workspace/README"); code != 0 || out != "hello\nuncommitted\n" || !strings.Contains(errOut, "changed no text file") {
		t.Errorf("a named connection: exit %d\n%s\n%s", code, out, errOut)
	}
	named = false

	// From a subdirectory of the repository, git still chooses the files: its ignored .env
	// stays here too.
	sub := filepath.Join(repo, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sub, "code.txt"), "in sub\n")
	writeFile(t, filepath.Join(sub, ".env"), "SECRET=canary-sub-9c2d\n")
	out, errOut, code = cli("--profile", profile, "am", "shell", "--connection", uri, "--repo", sub, "--", "sh", "-c", "ls -A /workspace")
	if code != 0 || strings.TrimSpace(out) != "code.txt" || strings.Contains(out+errOut, "canary-sub-9c2d") {
		t.Errorf("a subdirectory: exit %d, files %q\n%s", code, out, errOut)
	}

	// The egress gateway runs there as a sidecar on that machine's network: an allowed address
	// answers, another is refused with the gateway's 403, and both are in the signed record.
	srv := startEgressServers(t)
	gateway := filepath.Join(home, "gateway.yaml")
	writeFile(t, gateway, strings.Replace(mustRead(t, profile), "  network: none\n", fmt.Sprintf("  network:\n    mode: gateway\n    egress:\n      allow: [\"127.0.0.1:%d\"]\n", srv.p), 1))
	out, errOut, code = cli("--profile", gateway, "am", "shell", "--connection", uri, "--repo", repo, "--", "sh", "-c",
		fmt.Sprintf("wget -q -O- http://127.0.0.1:%d/over-ssh; echo; wget -q -O- http://127.0.0.1:%d/other 2>&1; echo", srv.p, srv.op))
	if code != 0 || !strings.Contains(out, "REACHED 127.0.0.1:") || !strings.Contains(out, "403") {
		t.Errorf("the gateway over ssh://: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if st, err := evidence.ReadUnverified(bundleFrom(t, errOut)); err != nil || st.Predicate.Egress == nil || st.Predicate.Egress.Allowed != 1 || st.Predicate.Egress.Denied != 1 {
		t.Errorf("the gateway's record over ssh://: %v %+v", err, st)
	}

	// What cannot work on another machine's service is refused, with the reason.
	mounts, data := filepath.Join(home, "mounts.yaml"), filepath.Join(home, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, mounts, strings.Replace(mustRead(t, profile), "  network: none\n", "  network: none\n  mounts:\n    - {source: "+data+", target: /data}\n", 1))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--profile", profile, "am", "shell", "--connection", uri, "--repo", repo, "--direct", "--", "true"}, "--direct: the live work tree is on this host, and the service at " + uri + " runs on another machine"},
		{[]string{"--profile", mounts, "am", "shell", "--connection", uri, "--repo", repo, "--", "true"}, "spec.mounts names paths of this host (" + data + ")"},
		{[]string{"--profile", profile, "am", "up", "--connection", uri, "--repo", repo}, "a workspace (up) needs a service on this host or its Podman machine"},
	} {
		if _, errOut, code := cli(tt.args...); code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, want %d naming %q\n%s", tt.args, code, ExitUsage, tt.want, errOut)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
