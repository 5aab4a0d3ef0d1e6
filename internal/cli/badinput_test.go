package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodProfile = `apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata:
  name: t
spec:
  host:
    os: linux
  image:
    ref: localhost/x:1
`

// TestBadInput runs malformed profiles and command lines through the CLI as a user would:
// each gets its exact message (first line of stderr; {file} is the profile's path) and exit
// code, and creates nothing.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name    string
		profile string // "" means no --profile
		args    []string
		code    int
		want    string
	}{
		{"empty profile", " ", nil, 2, "Error: {file}: is empty; start from an example: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"binary profile", "\xff\xfe\x00\x01ELF", nil, 2, "Error: {file}: is not UTF-8 text; a profile is a YAML file"},
		{"YAML syntax", "a: [\n", nil, 2, "Error: {file}:1: invalid YAML: did not find expected node content"},
		{"a list", "- a\n", nil, 2, "Error: {file}:1: must be a YAML mapping with apiVersion, kind, metadata and spec"},
		{"wrong apiVersion", strings.Replace(goodProfile, "sourceos.dev/v1alpha1", "v2", 1), nil, 2, "Error: {file}:1: apiVersion: must be sourceos.dev/v1alpha1"},
		{"wrong kind", strings.Replace(goodProfile, "kind: AgentMachineProfile", "kind: Profile", 1), nil, 2, "Error: {file}:2: kind: must be AgentMachineProfile"},
		{"no image", strings.Replace(goodProfile, "  image:\n    ref: localhost/x:1\n", "", 1), nil, 2, "Error: {file}:5: spec.image: is required; add it under spec"},
		{"bad name", strings.Replace(goodProfile, "name: t", "name: T!", 1), nil, 2, "Error: {file}:4: metadata.name: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"},
		{"misspelt field", goodProfile + "  netwrk: none\n", nil, 2, `Error: {file}:10: spec.netwrk: unknown field (did you mean "network"?); allowed here: env, evidence, host, image, machine, mounts, network, resources, secrets, tools, workspace`},
		{"network host", goodProfile + "  network: host\n", nil, 2, `Error: {file}:10: spec.network: must be one of none, bridge, gateway; got "host"`},
		{"relative mount", goodProfile + "  mounts:\n    - {source: docs, target: /d}\n", nil, 2, "Error: {file}:11: spec.mounts[0].source: must be an absolute path or start with ~/"},
		{"mount onto /", goodProfile + "  mounts:\n    - {source: /srv, target: /}\n", nil, 2, "Error: {file}:11: spec.mounts[0].target: must be an absolute path inside the container, other than /"},
		{"cpus string", goodProfile + "  resources: {cpus: two}\n", nil, 2, "Error: {file}:10: spec.resources.cpus: must be a number, not a string"},
		{"pids too low", goodProfile + "  resources: {pids: 1}\n", nil, 2, "Error: {file}:10: spec.resources.pids: must be at least 16; got 1"},
		{"bad digest", strings.Replace(goodProfile, "ref: localhost/x:1", "ref: localhost/x:1\n    digest: md5:abc", 1), nil, 2, "Error: {file}:10: spec.image.digest: must be sha256: followed by 64 lowercase hex digits (see: podman image inspect --format '{{.Digest}}' REF)"},
		{"provider for macOS on Linux", strings.Replace(goodProfile, "os: linux", "os: linux\n    provider: applehv", 1), nil, 2, "Error: {file}:8: spec.host.provider: applehv does not run on linux; use one of native, qemu"},
		{"secret with no source", goodProfile + "  secrets:\n    - {name: k}\n", nil, 2, "Error: {file}:11: spec.secrets[0]: set exactly one of fromEnv (a host environment variable), fromFile (a host file) or fromCommand (a host program's output, e.g. [gh, auth, token]) for the value's source"},
		{"tool secret undeclared", goodProfile + "  tools:\n    codex: {enabled: true, secrets: [k]}\n", nil, 2, `Error: {file}:11: spec.tools.codex.secrets[0]: secret "k" is not declared in spec.secrets; declare it there (name and fromEnv or fromFile) or remove it`},
		{"duplicate field", goodProfile + "  network: none\n  network: bridge\n", nil, 2, "Error: {file}:11: spec.network: is set twice (first on line 10); keep one"},
		{"two documents", goodProfile + "---\n" + goodProfile, nil, 2, "Error: {file}:10: holds more than one YAML document; keep one profile per file"},
		{"missing profile file", "<missing>", nil, 2, "Error: {file}: no such file; create one with: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"repo is home", goodProfile, []string{"shell", "--repo", "~", "--dry-run"}, 3, "Error: refused by policy:"},
		{"repo is /etc", goodProfile, []string{"shell", "--repo", "/etc", "--dry-run"}, 3, "Error: refused by policy:"},
		{"repo missing", goodProfile, []string{"shell", "--repo", "/nonexistent/repo", "--dry-run"}, 3, "Error: refused by policy:"},
		{"disabled tool", goodProfile, []string{"run", "--tool", "codex", "--repo", ".", "--dry-run"}, 3, "Error: refused by policy:"},
		{"undeclared secret", goodProfile, []string{"shell", "--repo", ".", "--secret", "k", "--dry-run"}, 3, "Error: refused by policy:"},
		{"unused --allow-protected", goodProfile, []string{"shell", "--repo", ".", "--allow-protected", "~/.ssh", "--dry-run"}, 3, "Error: refused by policy:"},
		{"run without --tool", goodProfile, []string{"run", "--repo", "."}, 2, "Error: --tool is required: name an enabled tool such as claude-code or codex"},
		{"run --tool shell", goodProfile, []string{"run", "--tool", "shell", "--repo", "."}, 2, "Error: use the shell command for a shell: sourceosctl agent-machine shell"},
		{"-o podman without --dry-run", goodProfile, []string{"shell", "--repo", ".", "-o", "podman"}, 2, "Error: --output podman describes a plan: add --dry-run"},
		{"-o yaml", goodProfile, []string{"shell", "--repo", ".", "--dry-run", "-o", "yaml"}, 2, `Error: --output must be one of table, json, podman, kube, not "yaml"`},
		{"--kube-kind without -o kube", goodProfile, []string{"shell", "--repo", ".", "--dry-run", "--kube-kind", "sandbox"}, 2, "Error: --kube-kind and --kube-workspace shape the Kubernetes export: add --dry-run -o kube"},
		{"--kube-kind deployment", goodProfile, []string{"shell", "--repo", ".", "--dry-run", "-o", "kube", "--kube-kind", "deployment"}, 2, `Error: --kube-kind "deployment": use pod or sandbox`},
		{"--kube-workspace a path", goodProfile, []string{"shell", "--repo", ".", "--dry-run", "-o", "kube", "--kube-workspace", "/home/u/app"}, 2, `Error: --kube-workspace "/home/u/app": use pvc:NAME, NAME a PersistentVolumeClaim's name (lower-case letters, digits and '-', at most 63); the repository on this host cannot be mounted in a cluster`},
		{"kube play of a missing file", goodProfile, []string{"kube", "play", "/nonexistent/pod.yaml"}, 2, "Error: read the manifest: open /nonexistent/pod.yaml: no such file or directory"},
		{"--keep with --secret", goodProfile, []string{"shell", "--repo", ".", "--keep", "--secret", "k"}, 2, "Error: --keep cannot be combined with --secret: a kept container would keep the secret's value readable through podman inspect"},
		{"--auth unknown", goodProfile, []string{"run", "--tool", "codex", "--repo", ".", "--auth", "bogus", "--dry-run"}, 2, "Error: --auth bogus: not a known credential; use anthropic, gh, git, openai"},
		{"--auth without the profile's consent", goodProfile + "  tools:\n    codex: {enabled: true}\n", []string{"run", "--tool", "codex", "--repo", ".", "--auth", "openai", "--dry-run"}, 3, "Error: refused by policy:"},
		{"injected secret's host not allowed", goodProfile + "  tools:\n    codex: {enabled: true, secrets: [k]}\n  network: gateway\n  secrets:\n    - {name: k, fromEnv: K, inject: [{hosts: [api.example.com]}]}\n", []string{"run", "--tool", "codex", "--repo", ".", "--secret", "k", "--dry-run"}, 3, "Error: refused by policy:"},
		{"unknown flag", goodProfile, []string{"shell", "--mount", "/x"}, 2, "Error: unknown flag: --mount"},
		{"unknown subcommand", goodProfile, []string{"launch"}, 2, `Error: unknown command "launch" for "sourceosctl agent-machine"; run 'sourceosctl agent-machine --help' for the list`},
		{"evidence verify of a plain directory", goodProfile, []string{"evidence", "verify", "."}, 2, "Error: . is not an evidence bundle (no attestation.sigstore.json)"},
		{"--connection with a broken URI, dry run", goodProfile, []string{"--connection", "tcp://[::1", "shell", "--repo", ".", "--dry-run"}, 2, `Error: --connection: "tcp://[::1" is not a Podman URI; use unix:///path/podman.sock, tcp://host:port or ssh://user@host/path (npipe:// is not supported by the API client)`},
		{"--repo naming a file, dry run", goodProfile, []string{"shell", "--repo", "../profile.yaml", "--dry-run"}, 3, "Error: refused by policy:"},
		{"a mount over /etc", goodProfile + "  mounts:\n    - {source: /srv, target: /etc}\n", nil, 2, "Error: {file}:11: spec.mounts[0].target: /etc is the image's system directory /etc; mount elsewhere, e.g. under /mnt or /srv"},
		{"--connection npipe", goodProfile, []string{"--connection", "npipe:////./pipe/podman", "status"}, 2, `Error: --connection: "npipe:////./pipe/podman" is not a Podman URI; use unix:///path/podman.sock, tcp://host:port or ssh://user@host/path (npipe:// is not supported by the API client)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, errOut := testFactory(t)
			home, _ := f.Home()
			repo := filepath.Join(home, "repo")
			_ = os.MkdirAll(repo, 0o755)
			f.WorkDir = func() (string, error) { return repo, nil }
			f.Getenv = func(string) string { return "" }
			args := []string{}
			file := filepath.Join(home, "profile.yaml")
			if tt.profile == "<missing>" {
				args = append(args, "--profile", file)
			} else if tt.profile != "" {
				if err := os.WriteFile(file, []byte(tt.profile), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--profile", file)
			}
			a := tt.args
			if a == nil {
				a = []string{"shell", "--repo", ".", "--dry-run"}
			}
			args = append(args, append([]string{"am"}, a...)...)
			code := run(t, f, args...)
			first, _, _ := strings.Cut(errOut.String(), "\n")
			want := strings.ReplaceAll(tt.want, "{file}", file)
			if code != tt.code || first != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and first line:\n%s", code, errOut, tt.code, want)
			}
			if _, err := os.Stat(filepath.Join(home, ".config")); err == nil {
				t.Error("bad input created the config directory")
			}
		})
	}
	if len(tests) < 33 {
		t.Fatalf("%d cases; the suite promises at least 30", len(tests))
	}
}

// TestAuthRefusalsSayWhatToAdd: --auth the profile has not consented to is refused (exit 3)
// with the profile lines that would consent, and an injected secret's host the egress policy
// does not allow is refused with the rule to add; nothing is created.
func TestAuthRefusalsSayWhatToAdd(t *testing.T) {
	for _, tc := range []struct {
		name, profile string
		args          []string
		want          []string
	}{
		{"gh", goodProfile + "  tools:\n    codex: {enabled: true}\n", []string{"--auth", "gh"},
			[]string{"--auth gh", "the profile does not declare secret gh", "fromCommand: [gh, auth, token]", "{hosts: [github.com], header: Authorization, scheme: Basic, user: x-access-token}", "list gh in spec.tools.codex.secrets"}},
		{"anthropic declared without inject", goodProfile + "  tools:\n    codex: {enabled: true, secrets: [anthropic]}\n  secrets:\n    - {name: anthropic, fromEnv: ANTHROPIC_API_KEY}\n", []string{"--auth", "anthropic"},
			[]string{"declares secret anthropic without inject (its value would enter the container)", "inject: [{hosts: [api.anthropic.com]}]"}},
		{"git without gitIdentity", goodProfile + "  tools:\n    codex: {enabled: true}\n", []string{"--auth", "git"},
			[]string{"--auth git", "does not let tool codex have the host's git identity", "add gitIdentity: true under spec.tools.codex"}},
		{"host outside the policy", goodProfile + "  tools:\n    codex: {enabled: true, secrets: [k]}\n  network: gateway\n  secrets:\n    - {name: k, fromEnv: K, inject: [{hosts: [api.example.com]}]}\n", []string{"--secret", "k"},
			[]string{"secret k", "is injected for api.example.com, which the egress policy does not allow", "add api.example.com to spec.network.egress.allow (or --allow-host api.example.com)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, errOut := testFactory(t)
			home, _ := f.Home()
			f.WorkDir = func() (string, error) { return home, nil }
			file := filepath.Join(home, "profile.yaml")
			if err := os.WriteFile(file, []byte(tc.profile), 0o644); err != nil {
				t.Fatal(err)
			}
			code := run(t, f, append([]string{"--profile", file, "am", "run", "--tool", "codex", "--repo", home, "--dry-run"}, tc.args...)...)
			if code != 3 {
				t.Errorf("exit %d, want 3; stderr:\n%s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}
