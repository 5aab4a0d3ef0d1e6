package agentmachine

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testProfile = `apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: t}
spec:
  host: {os: linux}
  image: {ref: localhost/x:1, digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
  tools:
    codex: {enabled: true, secrets: [key], env: [EDITOR]}
  secrets:
    - {name: key, fromEnv: OPENAI_API_KEY}
  mounts:
    - {source: /home/u/dev/docs, target: /docs, readOnly: true}
`

// fakeFS makes every path an existing, non-symlinked directory.
var fakeFS = &policy.Host{
	EvalSymlinks: func(p string) (string, error) { return filepath.Clean(p), nil },
	Lstat:        func(string) (fs.FileInfo, error) { return os.Lstat("/") },
}

func testFacts() Facts {
	return Facts{
		OS: "linux", Arch: "amd64", Home: "/home/u", RuntimeDir: "/run/user/1000", UID: 1000, GID: 1000,
		Connection: Connection{URI: "unix:///run/user/1000/podman/podman.sock", Source: "rootless socket"},
		Rootless:   true, ServerVersion: "5.7.0", Now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC),
		SessionID: "20261122t120000z-000000000000", FS: fakeFS,
	}
}

func mustPlan(t *testing.T, extra string, req SessionRequest, f Facts) *Plan {
	t.Helper()
	p, err := profile.Parse("p.yaml", []byte(testProfile+extra))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := NewPlan(p, req, f)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func TestPlanHardening(t *testing.T) {
	pl := mustPlan(t, "", SessionRequest{Tool: "codex", Repo: "~/dev/app", Args: []string{"exec", "fix it"}, Secrets: []string{"key"}}, testFacts())
	s := pl.Container
	checks := []struct {
		name      string
		got, want any
	}{
		{"cap drop", strings.Join(s.CapDrop, ","), "ALL"},
		{"cap add", len(s.CapAdd), 0},
		{"no new privileges", s.NoNewPrivileges, true},
		{"read-only root", s.ReadOnlyRoot, true},
		{"network", s.Network, "none"},
		{"user", s.User, "1000:1000"},
		{"userns", s.UserNS, "keep-id"},
		{"home", s.Env["HOME"], "/home/agent"},
		{"workdir", s.WorkDir, "/workspace"},
		{"memory", s.Limits.MemoryBytes, int64(4096 << 20)},
		{"pids", s.Limits.Pids, int64(1024)},
		{"command", strings.Join(s.Command, " "), "codex --sandbox danger-full-access exec fix it"},
		{"mounts", len(s.Mounts), 2},
		{"repo mount", s.Mounts[0].Source + ":" + s.Mounts[0].Target, "/home/u/dev/app:/workspace"},
		{"docs read-only", s.Mounts[1].ReadOnly, true},
		{"tmpfs", s.Tmpfs[0].Target + "," + s.Tmpfs[1].Target, "/tmp,/home/agent"},
		{"home chowned", s.Tmpfs[1].Chown, true},
		{"secret", s.Secrets[0].EnvVar, "OPENAI_API_KEY"},
		{"secret name is per session", s.Secrets[0].Name, "sosctl-20261122t120000z-000000000000-key"},
		{"pass env", strings.Join(pl.PassEnv, ","), "EDITOR"},
		{"label", s.Labels[LabelSession], pl.SessionID},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.Contains(strings.Join(pl.Notes, "\n"), "codex's own bubblewrap/Landlock sandbox") {
		t.Errorf("the plan does not say codex's sandbox is off: %v", pl.Notes)
	}
}

func TestSessionUser(t *testing.T) {
	tests := []struct {
		name     string
		rootless bool
		uid      int
		repoUID  int
		want     string
	}{
		{"rootless keeps the invoking user", true, 1000, 0, "1000:1000"},
		{"rootful non-root user", false, 1001, 0, "1001:1001"},
		{"rootful root uses the repository owner", false, 0, 1002, "1002:1002"},
		{"rootful root on a root-owned repository", false, 0, 0, "1000:1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFacts()
			f.Rootless, f.UID, f.GID, f.RepoUID, f.RepoGID = tt.rootless, tt.uid, tt.uid, tt.repoUID, tt.repoUID
			pl := mustPlan(t, "", SessionRequest{Tool: "shell", Repo: "/home/u/dev/app"}, f)
			if pl.Container.User != tt.want {
				t.Fatalf("user = %s, want %s", pl.Container.User, tt.want)
			}
			if strings.HasPrefix(pl.Container.User, "0:") {
				t.Fatal("a session must never run as root")
			}
			if (pl.Container.UserNS == "keep-id") != tt.rootless {
				t.Errorf("userns = %q with rootless=%v", pl.Container.UserNS, tt.rootless)
			}
		})
	}
}

func TestPlanNotesOldServerSecretLeak(t *testing.T) {
	f := testFacts()
	f.ServerVersion = "4.3.1"
	pl := mustPlan(t, "", SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}, f)
	if !strings.Contains(strings.Join(pl.Notes, "\n"), "containers/podman#23788") {
		t.Errorf("no note about Podman 4.3 showing env secrets in inspect: %v", pl.Notes)
	}
	f.ServerVersion = "5.3.0"
	pl = mustPlan(t, "", SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}, f)
	if strings.Contains(strings.Join(pl.Notes, "\n"), "23788") {
		t.Errorf("note shown for a fixed server: %v", pl.Notes)
	}
}

func TestMachinePath(t *testing.T) {
	tests := []struct{ goos, in, want string }{
		{"windows", `C:\Users\u\dev\app`, "/mnt/c/Users/u/dev/app"},
		{"windows", `D:\`, "/mnt/d"},
		{"windows", `c:/x`, "/mnt/c/x"},
		{"darwin", "/Users/u/dev/app", "/Users/u/dev/app"},
		{"linux", "/home/u/dev/app", "/home/u/dev/app"},
	}
	for _, tt := range tests {
		if got := MachinePath(tt.goos, tt.in); got != tt.want {
			t.Errorf("MachinePath(%s, %q) = %q, want %q", tt.goos, tt.in, got, tt.want)
		}
	}
}

func TestShellQuoteRoundTrips(t *testing.T) {
	argv := []string{"podman", "run", "a b", "it's", `{"sandbox":{"enabled":false}}`, "", "$HOME", "plain-word=1"}
	got := ShellQuote(argv)
	want := `podman run 'a b' 'it'\''s' '{"sandbox":{"enabled":false}}' '' '$HOME' plain-word=1`
	if got != want {
		t.Fatalf("ShellQuote = %s\nwant %s", got, want)
	}
}

// TestGoldenPlanOutputs pins the human table and the podman line for a fixed plan. Run with
// -update after an intended change.
func TestGoldenPlanOutputs(t *testing.T) {
	pl := mustPlan(t, "  network: bridge\n", SessionRequest{Tool: "codex", Repo: "/home/u/dev/app", Secrets: []string{"key"}}, testFacts())
	var table strings.Builder
	if err := WriteTable(&table, pl); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-table.golden", table.String())
	golden(t, "plan-podman.golden", ShellQuote(PodmanArgs(pl))+"\n")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRefusedPlanStillDescribesEveryMount(t *testing.T) {
	p, _ := profile.Parse("p.yaml", []byte(testProfile))
	pl, err := NewPlan(p, SessionRequest{Tool: "shell", Repo: "/home/u"}, testFacts())
	var re *policy.RefusedError
	if err == nil || !asRefused(err, &re) {
		t.Fatalf("error = %v, want a refusal", err)
	}
	var out strings.Builder
	_ = WriteRefusals(&out, pl)
	if !strings.Contains(out.String(), "REFUSE   workspace  /home/u") || !strings.Contains(out.String(), "allow    mount      /home/u/dev/docs") {
		t.Errorf("refusal table:\n%s", out.String())
	}
}

func asRefused(err error, target **policy.RefusedError) bool {
	re, ok := err.(*policy.RefusedError)
	*target = re
	return ok
}

func TestSessionIDsSortByTime(t *testing.T) {
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	prev := ""
	for i := 0; i < 100; i++ {
		id := newSessionID(base.Add(time.Duration(i) * time.Microsecond))
		if id <= prev {
			t.Fatalf("%s does not sort after %s", id, prev)
		}
		prev = id
	}
	if !strings.HasPrefix(prev, "20261122t120000.000099z-") {
		t.Errorf("id = %s", prev)
	}
}

// TestRepoWriteProblem: what a rootful session started by root (running as 1000:1000) can do
// with the repository, by its owner and mode.
func TestRepoWriteProblem(t *testing.T) {
	tests := []struct {
		owner int
		mode  fs.FileMode
		want  string // "" or a part of the problem
	}{
		{1000, 0o755, ""},
		{0, 0o777, ""},
		{0, 0o755, "can read but not write this root-owned repository (mode -rwxr-xr-x)"},
		{0, 0o700, "can neither read nor write this root-owned repository (mode -rwx------)"},
		{0, 0o711, "can neither read nor write"},
	}
	for _, tt := range tests {
		got := RepoWriteProblem(tt.owner, tt.owner, tt.mode)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("owner %d mode %v: %q, want %q", tt.owner, tt.mode, got, tt.want)
		}
	}
}
