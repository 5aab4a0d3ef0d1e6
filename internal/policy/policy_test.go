package policy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/profile"
)

const base = `apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata: {name: t}
spec:
  host: {os: linux}
  image: {ref: localhost/x:1}
  tools:
    codex: {enabled: true, secrets: [key], env: [EDITOR]}
    claude-code: {enabled: false}
  secrets:
    - {name: key, fromEnv: OPENAI_API_KEY}
    - {name: other, fromEnv: OTHER}
`

func mustProfile(t testing.TB, extra string) *profile.Profile {
	t.Helper()
	p, err := profile.Parse("p.yaml", []byte(base+extra))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// identityFS treats every path as an existing directory that is not a symlink, so a rule can
// be tested whether or not the path exists on this machine.
func identityFS(h policy.Host) policy.Host {
	h.EvalSymlinks = func(p string) (string, error) { return filepath.Clean(p), nil }
	h.Lstat = func(p string) (fs.FileInfo, error) { return os.Lstat("/") }
	return h
}

func expand(p policy.Protected, h policy.Host) string {
	switch {
	case p.Path == "~":
		return h.Home
	case strings.HasPrefix(p.Path, "~/"):
		return filepath.Join(h.Home, p.Path[2:])
	case strings.HasPrefix(p.Path, "$RUNTIME/"):
		return filepath.Join(h.RuntimeDir, strings.TrimPrefix(p.Path, "$RUNTIME/"))
	}
	return p.Path
}

// TestEveryProtectedPathIsRefused has one subtest per entry of the list and OS it applies to
// (an entry without an OS applies to all three): as the repository, as a mount, below it
// (unless exact), and its parent. Every entry names its source.
func TestEveryProtectedPathIsRefused(t *testing.T) {
	for _, p := range policy.ProtectedPaths {
		if p.Source == "" || p.What == "" {
			t.Errorf("%s: every entry says what it holds and where that comes from", p.Path)
		}
		oses := p.OS
		if len(oses) == 0 {
			oses = []string{"linux", "darwin", "windows"}
		}
		for _, goos := range oses {
			t.Run(goos+":"+p.Path, func(t *testing.T) {
				h := identityFS(policy.Host{OS: goos, Home: "/home/u", RuntimeDir: "/run/user/1000"})
				path := expand(p, h)
				prof := mustProfile(t, "")
				d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: path}, h)
				if d.Mounts[0].Allowed || d.Err() == nil {
					t.Fatalf("%s as the repository was allowed: %+v", path, d.Mounts[0])
				}
				if d.Mounts[0].Rule != policy.RuleProtected {
					t.Errorf("rule = %s, want %s", d.Mounts[0].Rule, policy.RuleProtected)
				}
				prof = mustProfile(t, "  mounts:\n    - {source: \""+path+"\", target: /m}\n")
				d = policy.Decide(prof, policy.Request{Tool: "shell", Repo: "/home/u/dev/app"}, h)
				if d.Mounts[1].Allowed {
					t.Errorf("%s as a mount was allowed", path)
				}
				if !p.Exact {
					d = policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: filepath.Join(path, "sub")}, h)
					if d.Mounts[0].Allowed {
						t.Errorf("%s/sub was allowed", path)
					}
				}
				if parent := filepath.Dir(path); parent != path {
					d = policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: parent}, h)
					if d.Mounts[0].Allowed {
						t.Errorf("parent %s was allowed", parent)
					}
				}
			})
		}
	}
}

// realHome builds a home directory with credentials, a repository and symlinks.
func realHome(t *testing.T) (policy.Host, string) {
	t.Helper()
	home := t.TempDir()
	for _, d := range []string{".ssh", ".aws", ".config/gh", "dev/app/docs", "dev/other"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	links := map[string]string{
		"dev/ssh-link":      filepath.Join(home, ".ssh"),
		"dev/home-link":     home,
		"dev/docs-link":     filepath.Join(home, "dev/app/docs"),
		"dev/outside-link":  outside,
		"dev/aws-parent":    filepath.Join(home, ".config"),
		"dev/app/escape":    filepath.Join(home, ".aws"),
		"dev/relative-link": "../.ssh",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(home, name)); err != nil {
			t.Fatal(err)
		}
	}
	return policy.Host{OS: "linux", Home: home, RuntimeDir: "/run/user/1000"}, home
}

func TestTrickyPaths(t *testing.T) {
	h, home := realHome(t)
	tests := []struct {
		name, repo string
		allowed    bool
		rule       string
	}{
		{"plain repository", "dev/app", true, policy.RuleAllowlisted},
		{"dot-dot into .ssh", "dev/app/../../.ssh", false, policy.RuleProtected},
		{"trailing slash", ".ssh/", false, policy.RuleProtected},
		{"inside .ssh", ".ssh/keys", false, policy.RuleMissing},
		{"symlink to .ssh", "dev/ssh-link", false, policy.RuleProtected},
		{"relative symlink to .ssh", "dev/relative-link", false, policy.RuleProtected},
		{"repository is a symlink to home", "dev/home-link", false, policy.RuleProtected},
		{"parent of .aws is home", ".", false, policy.RuleProtected},
		{"parent of .config/gh", ".config", false, policy.RuleParentProtected},
		{"symlink to a parent of .config/gh", "dev/aws-parent", false, policy.RuleParentProtected},
		{"symlink outside the allowlist", "dev/outside-link", false, policy.RuleSymlinkOutside},
		{"the parent of home", "..", false, policy.RuleParentProtected},
		{"root", "/", false, policy.RuleProtected},
		{"/etc/ssh", "/etc/ssh", false, policy.RuleProtected},
		{"/proc/self", "/proc/self", false, policy.RuleProtected},
		{"/var", "/var", false, policy.RuleParentProtected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tt.repo
			if !filepath.IsAbs(repo) {
				repo = filepath.Join(home, repo)
			}
			d := policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: filepath.Clean(repo)}, h)
			m := d.Mounts[0]
			if m.Allowed != tt.allowed || m.Rule != tt.rule {
				t.Fatalf("%s: allowed %v rule %s (%s); want %v %s", repo, m.Allowed, m.Rule, m.Reason, tt.allowed, tt.rule)
			}
			if !tt.allowed {
				var re *policy.RefusedError
				if err := d.Err(); err == nil || !asRefused(err, &re) || re.Hint() == "" {
					t.Errorf("refusal without a *RefusedError and a fix: %v", err)
				}
			}
		})
	}
}

func asRefused(err error, target **policy.RefusedError) bool {
	re, ok := err.(*policy.RefusedError)
	*target = re
	return ok
}

func TestSymlinkedMountInsideTheRepositoryIsAllowed(t *testing.T) {
	h, home := realHome(t)
	prof := mustProfile(t, "  mounts:\n    - {source: \""+filepath.Join(home, "dev/docs-link")+"\", target: /docs}\n")
	d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: filepath.Join(home, "dev/app")}, h)
	if err := d.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.Mounts[1].Source, filepath.Join(home, "dev/app/docs"); got != want {
		t.Errorf("mounted source = %s, want the resolved %s", got, want)
	}
}

func TestAllowProtectedNeedsBothOptIns(t *testing.T) {
	h, home := realHome(t)
	ssh := filepath.Join(home, ".ssh")
	repo := filepath.Join(home, "dev/app")
	withFlag := mustProfile(t, "  mounts:\n    - {source: \""+ssh+"\", target: /ssh, readOnly: true, allowProtected: true}\n")
	withoutFlag := mustProfile(t, "  mounts:\n    - {source: \""+ssh+"\", target: /ssh, readOnly: true}\n")
	tests := []struct {
		name    string
		prof    *profile.Profile
		optIns  []string
		allowed bool
	}{
		{"profile and command line", withFlag, []string{ssh}, true},
		{"profile only", withFlag, nil, false},
		{"command line only", withoutFlag, []string{ssh}, false},
		{"opt-in for another path", withFlag, []string{filepath.Join(home, ".aws")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := policy.Decide(tt.prof, policy.Request{Tool: "shell", Repo: repo, AllowProtected: tt.optIns}, h)
			if got := d.Err() == nil; got != tt.allowed {
				t.Fatalf("allowed = %v, want %v: %v", got, tt.allowed, d.Err())
			}
			// The fix asks only for what is missing: a profile that marks the mount already
			// is not told to mark it.
			if tt.name == "profile only" && (len(d.Refusals) == 0 || strings.Contains(d.Refusals[0].Fix, "mark it") || !strings.Contains(d.Refusals[0].Fix, "--allow-protected "+ssh)) {
				t.Errorf("fix for a mount the profile marks: %+v", d.Refusals)
			}
			if tt.allowed && d.Mounts[1].Rule != policy.RuleOptIn {
				t.Errorf("rule = %s, want %s", d.Mounts[1].Rule, policy.RuleOptIn)
			}
		})
	}
}

func TestSecretsDoorAndTools(t *testing.T) {
	h, home := realHome(t)
	repo := filepath.Join(home, "dev/app")
	tests := []struct {
		name    string
		tool    string
		secrets []string
		refusal string // "" when allowed
	}{
		{"all three opt-ins", "codex", []string{"key"}, ""},
		{"undeclared secret", "codex", []string{"nope"}, `secret "nope" is not declared in the profile's spec.secrets`},
		{"tool does not list it", "codex", []string{"other"}, `tool "codex" does not list secret "other" in its secrets`},
		{"shell gets no secrets", "shell", []string{"key"}, "the shell receives no secrets; only tools that list them do"},
		{"disabled tool", "claude-code", nil, `tool "claude-code" is not enabled in profile t (enabled: codex)`},
		{"unknown tool", "gemini", nil, `tool "gemini" is not defined in profile t (enabled: codex)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := policy.Decide(mustProfile(t, ""), policy.Request{Tool: tt.tool, Repo: repo, Secrets: tt.secrets}, h)
			err := d.Err()
			if tt.refusal == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Secrets[0].EnvVar != "OPENAI_API_KEY" || d.Secrets[0].Source != "env:OPENAI_API_KEY" {
					t.Errorf("secret decision = %+v", d.Secrets[0])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.refusal) {
				t.Fatalf("error %v, want %q", err, tt.refusal)
			}
			// The fix must be one the profile loader accepts: an unknown name is defined
			// under spec.tools.custom, not enabled under spec.tools.NAME.
			if tt.tool == "gemini" && (!strings.Contains(d.Refusals[0].Fix, "spec.tools.custom") || strings.Contains(d.Refusals[0].Fix, "spec.tools.gemini")) {
				t.Errorf("fix for an unknown tool: %q", d.Refusals[0].Fix)
			}
		})
	}
}

func TestCredentialEnvPassThroughIsRefused(t *testing.T) {
	h, home := realHome(t)
	prof := mustProfile(t, "")
	prof.Spec.Tools.Codex.Env = []string{"EDITOR", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"}
	d := policy.Decide(prof, policy.Request{Tool: "codex", Repo: filepath.Join(home, "dev/app")}, h)
	if len(d.Refusals) != 2 || d.Env[0].Allowed != true || d.Env[1].Allowed || d.Env[2].Allowed {
		t.Fatalf("env decisions %+v, refusals %+v", d.Env, d.Refusals)
	}
}

func TestHashIsStable(t *testing.T) {
	h, home := realHome(t)
	req := policy.Request{Tool: "codex", Repo: filepath.Join(home, "dev/app"), Secrets: []string{"key"}}
	a := policy.Decide(mustProfile(t, ""), req, h)
	b := policy.Decide(mustProfile(t, ""), req, h)
	if a.Hash() != b.Hash() || !strings.HasPrefix(a.Hash(), "sha256:") || len(a.Hash()) != 71 {
		t.Fatalf("same inputs gave %s and %s", a.Hash(), b.Hash())
	}
	req.Repo = filepath.Join(home, "dev/other")
	if c := policy.Decide(mustProfile(t, ""), req, h); c.Hash() == a.Hash() {
		t.Error("a different repository gave the same hash")
	}
	if c := policy.Decide(mustProfile(t, "  network: bridge\n"), policy.Request{Tool: "codex", Repo: filepath.Join(home, "dev/app"), Secrets: []string{"key"}}, h); c.Hash() == a.Hash() {
		t.Error("a different network gave the same hash")
	}
	canon := string(a.Canonical())
	if strings.Contains(canon, " ") && !strings.Contains(canon, "declared by") {
		t.Errorf("canonical JSON has insignificant space: %s", canon)
	}
	if !strings.HasPrefix(canon, `{"capAdd":[],"capDrop":["ALL"],`) {
		t.Errorf("canonical JSON keys are not sorted: %.80s", canon)
	}
}

func profileMount(source string) profile.Mount {
	return profile.Mount{Source: source, Target: "/m"}
}

// TestSourceosctlsOwnStateCannotBeAllowed: its configuration (signing key, profiles), state
// (evidence) and data (image manifest) are refused as the repository or a mount, and so is
// any parent, even when the profile marks the mount allowProtected and the command line
// repeats it — unlike a credential store, which that double opt-in allows.
func TestSourceosctlsOwnStateCannotBeAllowed(t *testing.T) {
	own := []policy.Protected{
		{Path: "/home/u/.config/sourceos/agent-machine", What: "sourceosctl's configuration", Always: true},
		{Path: "/home/u/.local/state/sourceos/agent-machine", What: "sourceosctl's state", Always: true},
		{Path: "/srv/evidence", What: "the profile's evidence directory", Always: true},
	}
	h := identityFS(policy.Host{OS: "linux", Home: "/home/u", RuntimeDir: "/run/user/1000", Extra: own})
	for _, path := range []string{
		"/home/u/.config/sourceos/agent-machine", "/home/u/.config/sourceos/agent-machine/keys",
		"/home/u/.config/sourceos", "/home/u/.local/state/sourceos/agent-machine/evidence", "/home/u/.local/state",
		"/srv/evidence", "/srv/evidence/20261129t120000z-x", "/srv",
	} {
		t.Run(path, func(t *testing.T) {
			prof := mustProfile(t, "  mounts:\n    - {source: \""+path+"\", target: /m, allowProtected: true}\n")
			d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: "/home/u/dev/app", AllowProtected: []string{path}}, h)
			if d.Mounts[1].Allowed {
				t.Fatalf("%s was allowed with the double opt-in: %+v", path, d.Mounts[1])
			}
			var fix string
			for _, r := range d.Refusals {
				if strings.HasPrefix(r.Subject, "mount ") {
					fix = r.Fix
				}
			}
			if !strings.HasPrefix(fix, "nothing can allow it") {
				t.Errorf("fix = %q", fix)
			}
			d = policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: path}, h)
			if d.Mounts[0].Allowed {
				t.Errorf("%s as the repository was allowed", path)
			}
		})
	}
	// The double opt-in still works for an ordinary protected path beside them.
	prof := mustProfile(t, "  mounts:\n    - {source: /home/u/.aws, target: /m, allowProtected: true}\n")
	if d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: "/home/u/dev/app", AllowProtected: []string{"/home/u/.aws"}}, h); !d.Mounts[1].Allowed {
		t.Errorf("~/.aws with the double opt-in was refused: %+v", d.Mounts[1])
	}
}

// TestTheWorkspaceMustBeADirectory: --repo naming a file is refused by the policy, so a dry
// run fails exactly where the real run would.
func TestTheWorkspaceMustBeADirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "README.md")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := policy.Decide(mustProfile(t, ""), policy.Request{Tool: "shell", Repo: file}, policy.Host{OS: "linux", Home: "/home/nobody"})
	if d.Mounts[0].Allowed || d.Mounts[0].Rule != policy.RuleNotADirectory {
		t.Fatalf("a file as the workspace: %+v", d.Mounts[0])
	}
	prof := mustProfile(t, "  mounts:\n    - {source: \""+file+"\", target: /m/readme}\n")
	if d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: dir}, policy.Host{OS: "linux", Home: "/home/nobody"}); !d.Mounts[1].Allowed {
		t.Errorf("a file as an extra mount is fine: %+v", d.Mounts[1])
	}
}
