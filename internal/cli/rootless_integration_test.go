package cli

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationRootlessSession proves the primary Linux mode — rootless Podman with
// keep-id — when the suite runs as root (as CI does), by running sourceosctl as an
// unprivileged user against that user's own rootless service. Run as a normal user, every
// other session test is already rootless.
func TestIntegrationRootlessSession(t *testing.T) {
	user := os.Getenv("SOURCEOSCTL_TEST_USER")
	switch {
	case os.Getuid() != 0:
		t.Skip("not root: the package's harness service is already rootless, so the other session tests cover this mode")
	case user == "" && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER (see scripts/ci-test-user.sh) so the rootless path is tested")
	case user == "":
		t.Skip("set SOURCEOSCTL_TEST_USER to an unprivileged user with subuid ranges to test rootless mode as root")
	}
	podmantest.Need(t)
	re, err := podmantest.StartAs(user)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()

	bin := filepath.Join(re.Dir, "sourceosctl")
	copyFile(t, os.Args[0], bin, 0o755)
	home := filepath.Join(re.Dir, "home")
	repo := filepath.Join(home, "dev", "app")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	cgroupsV1 := !isCgroup2()
	writeProfile := func(name, enforce string) string {
		p := filepath.Join(home, name)
		body := fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: rl}\nspec:\n  host: {os: linux}\n  image: {ref: %s}\n  resources: {memoryMiB: 256, pids: 64, enforce: %s}\n", podmantest.Image, enforce)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	required, bestEffort := writeProfile("required.yaml", "required"), writeProfile("best-effort.yaml", "best-effort")
	chownTree(t, home, re.UID, re.GID)

	const rlKey = "sk-rootless-Kq2Wn4Xe6Rb8Tc0Ym1Uv3Id5Of7Pg9" // the injected secret's value, below
	cli := func(args ...string) (string, int) {
		full := append([]string{asCLI + "=1", "CONTAINER_HOST=" + re.URI, "HOME=" + home, "RL_KEY=" + rlKey, "SSL_CERT_FILE=" + filepath.Join(home, "roots.pem"), bin}, args...)
		cmd := re.Command("env", full...)
		cmd.Dir = repo
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	script := `echo "uid=$(id -u)"; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; touch /x 2>/dev/null || echo root=read-only; echo "net=$(ls /sys/class/net | tr '\n' ' ')"; echo hi > /workspace/rootless.txt`

	out, code := cli("--profile", required, "am", "shell", "--repo", repo, "--", "sh", "-c", script)
	profile := required
	if cgroupsV1 {
		if code != ExitRefused || !strings.Contains(out, "rootless Podman on cgroups v1 ignores cpu, memory and pids limits") {
			t.Fatalf("cgroups v1, enforce: required: exit %d, want 3 and the reason:\n%s", code, out)
		}
		profile = bestEffort
		out, code = cli("--profile", profile, "am", "shell", "--repo", repo, "--dry-run")
		if code != 0 || !strings.Contains(out, "NOT enforced") || !strings.Contains(out, "Rootless           true") {
			t.Errorf("the best-effort plan does not say the limits are not enforced:\n%s", out)
		}
		out, code = cli("--profile", profile, "am", "shell", "--repo", repo, "--", "sh", "-c", script)
	}
	if code != 0 {
		t.Fatalf("rootless session: exit %d:\n%s", code, out)
	}
	for _, want := range []string{fmt.Sprintf("uid=%d", re.UID), "CapEff:\t0000000000000000", "NoNewPrivs:\t1", "root=read-only", "net=lo "} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	st, err := os.Stat(filepath.Join(repo, "rootless.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != re.UID {
		t.Errorf("file written in the container is owned by uid %d on the host, want the user's %d (keep-id)", uid, re.UID)
	}
	if names, _ := re.Podman("ps", "-a", "--format", "{{.Names}}"); strings.TrimSpace(names) != "" {
		t.Errorf("containers left: %s", names)
	}

	// The egress gateway as the user runs it: its socket is the user's own (keep-id maps the
	// container's user to them), and an allowed address on the host's loopback answers.
	srv := startEgressServers(t)
	gw := filepath.Join(home, "gateway.yaml")
	body, err := os.ReadFile(profile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gw, append(body, fmt.Sprintf("  network: {egress: {allow: [\"127.0.0.1:%d\"]}}\n", srv.p)...), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, home, re.UID, re.GID)
	out, code = cli("--profile", gw, "am", "shell", "--repo", repo, "--", "sh", "-c", fmt.Sprintf(`wget -q -O- http://127.0.0.1:%d/rootless; echo " rl=$?"; wget -q -O- http://127.0.0.1:%d/ 2>&1; echo " other=$?"`, srv.p, srv.op))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("REACHED 127.0.0.1:%d/rootless rl=0", srv.p)) || !strings.Contains(out, "403 Forbidden") || !strings.Contains(out, " other=1") ||
		!strings.Contains(out, "! egress: 127.0.0.1:") {
		t.Errorf("rootless session through the gateway: exit %d:\n%s", code, out)
	}

	// Tool state and an injected secret as the user runs them: codex's state volume (the
	// user's through keep-id) keeps its history across sessions, and the injected host gets
	// the key while the container holds a placeholder.
	api := &recorder{}
	apiSrv := httptest.NewTLSServer(api)
	defer apiSrv.Close()
	apiHost := apiSrv.Listener.Addr().String()
	roots := filepath.Join(home, "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: apiSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(home, "creds.yaml")
	if err := os.WriteFile(creds, append(body, fmt.Sprintf(`  tools:
    codex: {enabled: true}
    custom: [{name: probe, enabled: true, command: [sh, -c], secrets: [api]}]
  secrets: [{name: api, fromEnv: RL_KEY, target: API_KEY, inject: [{hosts: ["%s"]}]}]
  network: {egress: {allow: ["%s"]}}
`, apiHost, apiHost)...), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, home, re.UID, re.GID)
	defer func() { _, _ = re.Podman("volume", "rm", "sosctl-state-rl-codex") }()
	for i, want := range []string{"history=one|", "history=one|two|"} {
		out, code := cli("--profile", creds, "am", "run", "--tool", "codex", "--repo", repo, "--", []string{"one", "two"}[i])
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("rootless codex session %d: exit %d, want %q:\n%s", i+1, code, want, out)
		}
	}
	out, code = cli("--profile", creds, "am", "run", "--tool", "probe", "--secret", "api", "--repo", repo, "--",
		fmt.Sprintf(`export no_proxy= NO_PROXY=; curl -sS -H "x-api-key: $API_KEY" https://%s/rl; echo " api=$?"; echo "key=$API_KEY"`, apiHost))
	if code != 0 || !strings.Contains(out, "REACHED /rl api=0") || strings.Contains(out, rlKey) || !strings.Contains(api.all(), "X-Api-Key: "+rlKey) {
		t.Errorf("rootless injected secret: exit %d:\n%s\nthe host got:\n%s", code, out, api.all())
	}

	// The user's own service, weakened by its containers.conf: the helper sees from inside
	// what inspect does not (a volume), and the plan's explicit settings override the rest.
	cliOn := func(uri string, args ...string) (string, int) {
		full := append([]string{asCLI + "=1", "CONTAINER_HOST=" + uri, "HOME=" + home, bin}, args...)
		cmd := re.Command("env", full...)
		cmd.Dir = repo
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	weak := re.Weakened(t, `volumes = ["/etc:/hostetc:ro"]`)
	if out, code := cliOn(weak.URI, "--profile", profile, "am", "shell", "--repo", repo, "--", "sh", "-c", "echo TOOL-RAN"); code != ExitRefused ||
		!strings.Contains(out, "mount /hostetc") || strings.Contains(out, "TOOL-RAN") {
		t.Errorf("rootless service with a configured volume: exit %d, want 3 naming /hostetc:\n%s", code, out)
	}
	weak = re.Weakened(t, `seccomp_profile = "unconfined"`, `ipcns = "host"`, `umask = "0000"`)
	if out, code := cliOn(weak.URI, "--profile", profile, "am", "shell", "--repo", repo, "--", "sh", "-c", "grep ^Seccomp: /proc/self/status; umask"); code != 0 ||
		!strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "0022") {
		t.Errorf("rootless service with unconfined seccomp, host IPC and umask 0000: exit %d, want 0 with seccomp 2 and umask 0022:\n%s", code, out)
	}
}

func isCgroup2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func chownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationRootlessCopySession is the repository escape under rootless Podman, the
// primary Linux mode: an unprivileged user's session on their own repository plants every
// mechanism the kit knows in its copy; nothing fires when the session ends, under the
// user's ordinary git, or after they merge the branch — which arrives with the agent's
// commit and leftovers — and their repository is unchanged but for the branch.
func TestIntegrationRootlessCopySession(t *testing.T) {
	user := os.Getenv("SOURCEOSCTL_TEST_USER")
	switch {
	case os.Getuid() != 0:
		t.Skip("not root: the package's harness service is already rootless, so TestIntegrationNothingTheAgentWritesRunsOnTheHost covers this mode")
	case user == "" && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER (see scripts/ci-test-user.sh) so the rootless path is tested")
	case user == "":
		t.Skip("set SOURCEOSCTL_TEST_USER to an unprivileged user with subuid ranges to test rootless mode as root")
	}
	podmantest.Need(t)
	re, err := podmantest.StartAs(user)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	bin := filepath.Join(re.Dir, "sourceosctl")
	copyFile(t, os.Args[0], bin, 0o755)
	home := filepath.Join(re.Dir, "copy-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &gitWorkspace{workspace: &workspace{home: home, repo: filepath.Join(home, "dev", "app"), profile: filepath.Join(home, "profile.yaml")},
		ownerHome: home, uid: re.UID, gid: re.GID}
	body := fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: rl}\nspec:\n  host: {os: linux}\n  image: {ref: %s}\n  resources: {memoryMiB: 256, pids: 64, enforce: best-effort}\n", podmantest.Image)
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, home, re.UID, re.GID)
	w.initRepo(t)
	kit := newEscapeKit(t, w, filepath.Join(home, "kit"))
	before := w.state(t, "")
	cli := func(args ...string) (string, int) {
		full := append([]string{asCLI + "=1", "CONTAINER_HOST=" + re.URI, "HOME=" + home, bin}, args...)
		cmd := re.Command("env", full...)
		cmd.Dir = w.repo
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	script := `cd /workspace && test -e .env && echo "SAW .env"
echo "agent work" > agent.txt && git add agent.txt && git commit -q -m "agent: add agent.txt" && echo COMMITTED
echo leftover > leftover.txt
` + kit.plant(w.origin)
	out, code := cli("--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "COMMITTED") || !strings.Contains(out, "PLANTED") || strings.Contains(out, "SAW .env") {
		t.Fatalf("rootless copy session: exit %d:\n%s", code, out)
	}
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("ending the rootless session ran what the agent planted: %v", fired)
	}
	out, code = cli("am", "sessions", "--repo", w.repo, "-o", "json")
	var rows []sessionRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0].State != "to review" {
		t.Fatalf("sessions: exit %d:\n%s", code, out)
	}
	if after := w.state(t, rows[0].Branch); after != before {
		t.Errorf("the user's repository changed beyond the session's branch:\nbefore %+v\nafter  %+v", before, after)
	}
	tree := strings.Split(w.git(t, w.repo, "ls-tree", "-r", "--name-only", rows[0].Branch), "\n")
	for _, want := range []string{"agent.txt", "leftover.txt", "notes.txt"} {
		if !slices.Contains(tree, want) {
			t.Errorf("the branch lacks %s: %v", want, tree)
		}
	}
	if log := w.ordinaryGit(t, w.repo, false); len(kit.fired(t)) > 0 || kit.movedWorkTree(log) {
		t.Fatalf("the user's ordinary git ran what the agent planted: %v\n%s", kit.fired(t), log)
	}
	w.git(t, w.repo, "stash", "--quiet", "--include-untracked")
	if out, code = cli("am", "merge", rows[0].Session); code != 0 {
		t.Fatalf("merge: exit %d:\n%s", code, out)
	}
	if log := w.ordinaryGit(t, w.repo, true); len(kit.fired(t)) > 0 || kit.movedWorkTree(log) {
		t.Fatalf("after the merge, the user's ordinary git ran what the agent planted: %v\n%s", kit.fired(t), log)
	}
	if names, _ := re.Podman("ps", "-a", "--format", "{{.Names}}"); strings.TrimSpace(names) != "" {
		t.Errorf("containers left: %s", names)
	}
}

// TestIntegrationRootlessWorkspace lives a workspace on an unprivileged user's own rootless
// service, gateway and copy included: up, exec (as that user's keep-id uid, its gateway
// refusing a host), down (nothing the agent planted runs on the host, the work is on the
// branch), up again on the same copy, and rm.
func TestIntegrationRootlessWorkspace(t *testing.T) {
	user := os.Getenv("SOURCEOSCTL_TEST_USER")
	switch {
	case os.Getuid() != 0:
		t.Skip("not root: the package's harness service is already rootless, so TestIntegrationWorkspaceLifecycle covers this mode")
	case user == "" && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: set SOURCEOSCTL_TEST_USER (see scripts/ci-test-user.sh) so the rootless path is tested")
	case user == "":
		t.Skip("set SOURCEOSCTL_TEST_USER to an unprivileged user with subuid ranges to test rootless mode as root")
	}
	podmantest.Need(t)
	re, err := podmantest.StartAs(user)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	bin := filepath.Join(re.Dir, "sourceosctl")
	copyFile(t, os.Args[0], bin, 0o755)
	home := filepath.Join(re.Dir, "ws-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &gitWorkspace{workspace: &workspace{home: home, repo: filepath.Join(home, "dev", "app"), profile: filepath.Join(home, "profile.yaml")},
		ownerHome: home, uid: re.UID, gid: re.GID}
	body := fmt.Sprintf("apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: rlws}\nspec:\n  host: {os: linux}\n  image: {ref: %s}\n  network: {mode: gateway}\n  resources: {memoryMiB: 256, pids: 64, enforce: best-effort}\n", podmantest.Image)
	if err := os.WriteFile(w.profile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, home, re.UID, re.GID)
	w.initRepo(t)
	kit := newEscapeKit(t, w, filepath.Join(home, "kit"))
	cli := func(args ...string) (string, int) {
		full := append([]string{asCLI + "=1", "CONTAINER_HOST=" + re.URI, "HOME=" + home, bin, "--profile", w.profile, "am"}, args...)
		cmd := re.Command("env", full...)
		cmd.Dir = w.repo
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := cli("up", "--repo", w.repo, "--name", "rl"); code != 0 {
		t.Fatalf("rootless up: exit %d\n%s", code, out)
	}
	script := `cd /workspace && id -u && echo "agent work" > agent.txt && git add agent.txt && git commit -q -m "agent: add agent.txt" && echo COMMITTED
wget -q -O- http://denied.example.com/ 2>&1; echo " denied=$?"
` + kit.plant(w.origin)
	out, code := cli("exec", "--name", "rl", "--", "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "COMMITTED") || !strings.Contains(out, "PLANTED") || !strings.Contains(out, "403") || strings.Contains(out, " denied=0") {
		t.Fatalf("rootless exec: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("%d\n", re.UID)) && !strings.Contains(out, "1000\n") {
		t.Errorf("the join's uid:\n%s", out)
	}
	if out, code = cli("down", "--name", "rl"); code != 0 {
		t.Fatalf("rootless down: exit %d\n%s", code, out)
	}
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("bringing the workspace down ran what the agent planted: %v", fired)
	}
	out, code = cli("sessions", "--repo", w.repo, "-o", "json")
	var rows []sessionRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("sessions: exit %d:\n%s", code, out)
	}
	if tree := w.git(t, w.repo, "ls-tree", "-r", "--name-only", rows[0].Branch); !strings.Contains(tree, "agent.txt") {
		t.Errorf("the branch lacks agent.txt: %s", tree)
	}
	if out, code = cli("up", "--repo", w.repo, "--name", "rl"); code != 0 {
		t.Fatalf("rootless up again: exit %d\n%s", code, out)
	}
	if out, code = cli("exec", "--name", "rl", "--", "cat", "agent.txt"); code != 0 || !strings.Contains(out, "agent work") {
		t.Errorf("the workspace's files after down and up: exit %d\n%s", code, out)
	}
	if out, code = cli("rm", "rl", "--yes"); code != 0 {
		t.Fatalf("rootless rm: exit %d\n%s", code, out)
	}
	if names, _ := re.Podman("ps", "-a", "--format", "{{.Names}}"); strings.TrimSpace(names) != "" {
		t.Errorf("containers left: %s", names)
	}
	if fired := kit.fired(t); len(fired) > 0 {
		t.Fatalf("rm ran what the agent planted: %v", fired)
	}
}
