package profile_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/profiles"
)

// valid is a minimal valid profile; cases below edit it.
const valid = `apiVersion: sourceos.dev/v1alpha1
kind: AgentMachineProfile
metadata:
  name: test
spec:
  host:
    os: linux
  image:
    ref: localhost/test:1
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole error message
	}{
		{"empty file", "", "p.yaml: is empty; start from an example: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"only whitespace", " \n\t\n", "p.yaml: is empty; start from an example: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"only comments", "# a profile\n# to come\n", "p.yaml: holds no YAML document (only comments); start from an example: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"binary garbage", "\x00\x01\x02\xff", "p.yaml: is not UTF-8 text; a profile is a YAML file"},
		{"control characters", "a: \x01", "p.yaml: invalid YAML: control characters are not allowed"},
		{"syntax error", "a: [\n", "p.yaml:1: invalid YAML: did not find expected node content"},
		{"bad indentation", "a:\n  b: 1\n c: 2\n", "p.yaml:2: invalid YAML: did not find expected key"},
		{"two documents", valid + "---\n" + valid, "p.yaml:10: holds more than one YAML document; keep one profile per file"},
		{"a list, not a mapping", "- 1\n- 2\n", "p.yaml:1: must be a YAML mapping with apiVersion, kind, metadata and spec"},
		{"a scalar", "hello\n", "p.yaml:1: must be a YAML mapping with apiVersion, kind, metadata and spec"},
		{"duplicate key", "a: 1\na: 2\n", "p.yaml:2: a: is set twice (first on line 1); keep one"},
		{"unsupported tag", "a: !custom x\n", "p.yaml:1: a: uses the YAML tag !custom, which a profile does not support; remove the tag"},
		{"infinite number", strings.Replace(valid, "  host:", "  resources:\n    cpus: .inf\n  host:", 1), "p.yaml:7: spec.resources.cpus: must be a finite number, not \".inf\""},
		{"wrong apiVersion", strings.Replace(valid, "sourceos.dev/v1alpha1", "v1", 1), "p.yaml:1: apiVersion: must be sourceos.dev/v1alpha1"},
		{"wrong kind", strings.Replace(valid, "kind: AgentMachineProfile", "kind: Pod", 1), "p.yaml:2: kind: must be AgentMachineProfile"},
		{"missing spec", "apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: x}\n", "p.yaml:1: spec: is required; add it at the top level"},
		{"missing image", strings.Replace(valid, "  image:\n    ref: localhost/test:1\n", "", 1), "p.yaml:5: spec.image: is required; add it under spec"},
		{"bad name", strings.Replace(valid, "name: test", "name: My_Profile", 1), "p.yaml:4: metadata.name: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"},
		{"unknown top-level field", valid + "extra: 1\n", "p.yaml:10: extra: unknown field; allowed here: apiVersion, kind, metadata, spec"},
		{"misspelt field", valid + "  mountz: []\n", "p.yaml:10: spec.mountz: unknown field (did you mean \"mounts\"?); allowed here: env, evidence, host, image, machine, mounts, network, resources, secrets, tools, workspace"},
		{"relative mount source", valid + "  mounts:\n    - source: ~/a\n      target: /a\n    - source: /b\n      target: /b\n    - source: dev/x\n      target: /x\n", "p.yaml:15: spec.mounts[2].source: must be an absolute path or start with ~/"},
		{"mount target /", valid + "  mounts:\n    - source: /a\n      target: /\n", "p.yaml:12: spec.mounts[0].target: must be an absolute path inside the container, other than /"},
		{"mount without target", valid + "  mounts:\n    - source: /a\n", "p.yaml:11: spec.mounts[0].target: is required; add it under spec.mounts[0]"},
		{"duplicate mount target", valid + "  mounts:\n    - source: /a\n      target: /workspace\n", "p.yaml:12: spec.mounts[0].target: /workspace is already used by spec.workspace.mountPath; give each mount its own target"},
		{"unknown network", valid + "  network: host\n", "p.yaml:10: spec.network: must be one of none, bridge, gateway; got \"host\""},
		{"network as a number", valid + "  network: 3\n", "p.yaml:10: spec.network: must be a string or object, not a number"},
		{"unknown network mode", valid + "  network:\n    mode: host\n", "p.yaml:11: spec.network.mode: must be one of none, bridge, gateway; got \"host\""},
		{"misspelt egress field", valid + "  network:\n    egress:\n      alow: [a.example]\n", "p.yaml:12: spec.network.egress.alow: unknown field (did you mean \"allow\"?); allowed here: allow, deny, toolHosts"},
		{"bad egress port", valid + "  network:\n    egress:\n      allow:\n        - ok.example\n        - github.com:99999\n", "p.yaml:14: spec.network.egress.allow[1]: \"github.com:99999\": port must be 1-65535; write host, *.suffix, host:port, an address or a CIDR prefix (10.0.0.0/8:22)"},
		{"a URL, not a host", valid + "  network:\n    egress:\n      allow: [\"https://example.com/path\"]\n", "p.yaml:12: spec.network.egress.allow[0]: \"https://example.com/path\" is a URL: a rule names a host, not a URL (write example.com); write host, *.suffix, host:port, an address or a CIDR prefix (10.0.0.0/8:22)"},
		{"inner wildcard", valid + "  network:\n    egress:\n      deny: [\"a.*.example\"]\n", "p.yaml:12: spec.network.egress.deny[0]: \"a.*.example\": a wildcard is allowed only as a leading \"*.\"; write host, *.suffix, host:port, an address or a CIDR prefix (10.0.0.0/8:22)"},
		{"egress rules without the gateway", valid + "  network:\n    mode: bridge\n    egress:\n      allow: [a.example]\n", "p.yaml:11: spec.network.mode: is bridge, which ignores spec.network.egress: set mode: gateway (or leave it out) to apply the egress policy, or remove the egress rules"},
		{"cpus as string", valid + "  resources:\n    cpus: \"2\"\n", "p.yaml:11: spec.resources.cpus: must be a number, not a string"},
		{"cpus zero", valid + "  resources:\n    cpus: 0\n", "p.yaml:11: spec.resources.cpus: must be at least 0.01; got 0"},
		{"cpus below Podman's least quota", valid + "  resources:\n    cpus: 0.001\n", "p.yaml:11: spec.resources.cpus: must be at least 0.01; got 0.001"},
		{"memory too small", valid + "  resources:\n    memoryMiB: 8\n", "p.yaml:11: spec.resources.memoryMiB: must be at least 64; got 8"},
		{"pids huge", valid + "  resources:\n    pids: 99999999999999999999\n", "p.yaml:11: spec.resources.pids: must be at most 1048576; got 100000000000000000000"},
		{"source with registry and archive", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - registry: example.com/a:1\n        archive: https://example.com/a.tar", 1), "p.yaml:11: spec.image.sources[0]: set exactly one of registry (an image reference) or archive (a URL or path of a `podman save` archive)"},
		{"archive without sha256", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - registry: example.com/a:1\n      - archive: https://example.com/a.tar", 1), "p.yaml:12: spec.image.sources[1].sha256: is required with archive: the download is checked against it before it is loaded (sha256sum ARCHIVE)"},
		{"archive over plain http", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - archive: http://example.com/a.tar\n        sha256: "+strings.Repeat("a", 64), 1), "p.yaml:11: spec.image.sources[0].archive: must be an https:// URL or a path to a `podman save` archive (http:// only for localhost)"},
		{"archive sha256 short", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - archive: /srv/a.tar\n        sha256: abc", 1), "p.yaml:12: spec.image.sources[0].sha256: must be 64 lowercase hex digits (see: sha256sum ARCHIVE)"},
		{"sha256 on a registry", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - registry: example.com/a:1\n        sha256: "+strings.Repeat("a", 64), 1), "p.yaml:11: spec.image.sources[0].sha256: applies to archives only; pin a registry image with spec.image.digest"},
		{"empty source", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    sources:\n      - {}", 1), "p.yaml:11: spec.image.sources[0]: set exactly one of registry (an image reference) or archive (a URL or path of a `podman save` archive)"},
		{"bad digest", strings.Replace(valid, "ref: localhost/test:1", "ref: localhost/test:1\n    digest: sha256:abc", 1), "p.yaml:10: spec.image.digest: must be sha256: followed by 64 lowercase hex digits (see: podman image inspect --format '{{.Digest}}' REF)"},
		{"image ref with space", strings.Replace(valid, "ref: localhost/test:1", "ref: \"my image\"", 1), "p.yaml:9: spec.image.ref: must be an image reference such as localhost/sourceos/agent-workspace:latest (lowercase registry and name, no spaces)"},
		{"unknown os", strings.Replace(valid, "os: linux", "os: plan9", 1), "p.yaml:7: spec.host.os: must be one of linux, darwin, windows; got \"plan9\""},
		{"provider for another os", strings.Replace(valid, "os: linux", "os: linux\n    provider: applehv", 1), "p.yaml:8: spec.host.provider: applehv does not run on linux; use one of native, qemu"},
		{"darwin without machine", strings.Replace(valid, "os: linux", "os: darwin", 1), "p.yaml:6: spec.machine: is required with provider applehv (Podman runs in a VM there); add machine: {name: sourceos-agent}"},
		{"machine with native", valid + "  machine:\n    name: m\n", "p.yaml:10: spec.machine: cannot be used with provider native; set spec.host.provider to qemu or remove the machine"},
		{"secret with two sources", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      fromFile: /k\n", "p.yaml:11: spec.secrets[0]: set exactly one of fromEnv (a host environment variable), fromFile (a host file) or fromCommand (a host program's output, e.g. [gh, auth, token]) for the value's source"},
		{"secret without source", valid + "  secrets:\n    - name: k\n", "p.yaml:11: spec.secrets[0]: set exactly one of fromEnv (a host environment variable), fromFile (a host file) or fromCommand (a host program's output, e.g. [gh, auth, token]) for the value's source"},
		{"secret declared twice", valid + "  secrets:\n    - {name: k, fromEnv: K}\n    - {name: k, fromEnv: L}\n", "p.yaml:12: spec.secrets[1].name: secret \"k\" is declared twice; keep one"},
		{"bad env name", valid + "  secrets:\n    - {name: k, fromEnv: 1K}\n", "p.yaml:11: spec.secrets[0].fromEnv: must be an environment variable name (letters, digits, '_'; not starting with a digit)"},
		{"tool secret undeclared", valid + "  tools:\n    codex:\n      secrets: [openai]\n", "p.yaml:12: spec.tools.codex.secrets[0]: secret \"openai\" is not declared in spec.secrets; declare it there (name and fromEnv or fromFile) or remove it"},
		{"secret with a source and a command", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      fromCommand: [gh, auth, token]\n", "p.yaml:11: spec.secrets[0]: " + "set exactly one of fromEnv (a host environment variable), fromFile (a host file) or fromCommand (a host program's output, e.g. [gh, auth, token]) for the value's source"},
		{"injected for a pattern", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      inject:\n        - hosts: [\"*.example.com\"]\n  network: gateway\n", "p.yaml:14: spec.secrets[0].inject[0]: host \"*.example.com\": name one host exactly (host or host:port); a secret is never sent to a pattern"},
		{"injected with a scheme but no header", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      inject:\n        - hosts: [api.example.com]\n          scheme: Bearer\n  network: gateway\n", "p.yaml:14: spec.secrets[0].inject[0]: scheme needs header (the header the value is set in, e.g. Authorization)"},
		{"injected with an unknown scheme", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      inject:\n        - hosts: [api.example.com]\n          header: Authorization\n          scheme: Digest\n  network: gateway\n", "p.yaml:16: spec.secrets[0].inject[0].scheme: must be one of Bearer, Basic, bearer, basic; got \"Digest\""},
		{"injected without the gateway", valid + "  network: none\n  secrets:\n    - name: k\n      fromEnv: K\n      inject:\n        - hosts: [api.example.com]\n", "p.yaml:12: spec.secrets[0].inject: needs spec.network: gateway (the egress gateway injects the value); it is none"},
		{"injected with user and Bearer", valid + "  secrets:\n    - name: k\n      fromEnv: K\n      inject:\n        - {hosts: [a.example], header: Authorization, scheme: Bearer, user: me}\n  network: gateway\n", "p.yaml:14: spec.secrets[0].inject[0]: user is for scheme Basic only"},
		{"unknown tool field", valid + "  tools:\n    codex:\n      enabld: true\n", "p.yaml:12: spec.tools.codex.enabld: unknown field (did you mean \"enabled\"?); allowed here: command, enabled, env, gitIdentity, secrets, state"},
		{"unknown tool", valid + "  tools:\n    gemini: {}\n", "p.yaml:11: spec.tools.gemini: unknown field; allowed here: claude-code, codex, custom"},
		{"custom tool without command", valid + "  tools:\n    custom:\n      - name: lint\n", "p.yaml:12: spec.tools.custom[0].command: is required; add it under spec.tools.custom[0]"},
		{"custom tool named like a built-in", valid + "  tools:\n    custom:\n      - name: codex\n        command: [x]\n", "p.yaml:12: spec.tools.custom[0].name: the name \"codex\" is taken (built-in or listed before); choose another"},
		{"enabled as string", valid + "  tools:\n    codex:\n      enabled: \"yes\"\n", "p.yaml:12: spec.tools.codex.enabled: must be a boolean, not a string"},
		{"a credential in spec.env", valid + "  env:\n    NODE_ENV: dev\n    NPM_TOKEN: x\n", "p.yaml:12: spec.env.NPM_TOKEN: looks like a credential, and spec.env values are plain text in the profile, the plan and podman inspect; declare it under spec.secrets instead"},
		{"sourceosctl's own variable in spec.env", valid + "  env:\n    HTTPS_PROXY: http://x\n", "p.yaml:11: spec.env.HTTPS_PROXY: is set by sourceosctl itself (HOME, TERM, PATH, container, SOURCEOS_*, the proxy variables); remove it"},
		{"a bad variable name in spec.env", valid + "  env:\n    1X: y\n", "p.yaml:11: spec.env.1X: must be an environment variable name (letters, digits, '_'; not starting with a digit)"},
		{"a port out of range", strings.Replace(valid, "  host:", "  workspace:\n    ports: [3000, 70000]\n  host:", 1), "p.yaml:7: spec.workspace.ports[1]: must be at most 65535; got 70000"},
		{"a post-create command without one", strings.Replace(valid, "  host:", "  workspace:\n    postCreate:\n      - name: x\n  host:", 1), "p.yaml:8: spec.workspace.postCreate[0].command: is required; add it under spec.workspace.postCreate[0]"},
		{"non-string key", valid + "  ? [a]\n  : 1\n", "p.yaml:10: spec: field names must be plain words, not a list"},
		{"alias bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", "p.yaml:1: e[7][0][7][0][8]: document is too large or too deeply nested (aliases expand to more than 100000 values or 64 levels)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := profile.Parse("p.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted the profile: %+v", p)
			}
			var le *profile.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error is %T, want *profile.LoadError", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestParseReportsEveryProblemSortedByLine(t *testing.T) {
	yaml := valid + "  network: host\n  resources:\n    cpus: \"2\"\n  mountz: []\n"
	_, err := profile.Parse("p.yaml", []byte(yaml))
	want := `p.yaml: 3 problems:
  p.yaml:10: spec.network: must be one of none, bridge, gateway; got "host"
  p.yaml:12: spec.resources.cpus: must be a number, not a string
  p.yaml:13: spec.mountz: unknown field (did you mean "mounts"?); allowed here: env, evidence, host, image, machine, mounts, network, resources, secrets, tools, workspace`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got: %v\nwant: %s", err, want)
	}
}

func TestParseKeepsUnquotedDatesAsStrings(t *testing.T) {
	p, err := profile.Parse("p.yaml", []byte(strings.Replace(valid, "name: test", "name: 2024-01-01\n  description: 2024-01-01", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Metadata.Name != "2024-01-01" || p.Metadata.Description != "2024-01-01" {
		t.Fatalf("metadata = %+v, want the dates verbatim", p.Metadata)
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	p, err := profile.Parse("p.yaml", []byte(valid+"  secrets:\n    - {name: openai-key, fromFile: ~/k}\n    - {name: x, fromEnv: X_TOKEN}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec
	if s.Network.Mode != "none" || s.Workspace.MountPath != "/workspace" || s.Host.Provider != "native" {
		t.Errorf("network %q, mountPath %q, provider %q: want none, /workspace, native", s.Network.Mode, s.Workspace.MountPath, s.Host.Provider)
	}
	if s.Resources != (profile.Resources{CPUs: 2, MemoryMiB: 4096, Pids: 1024, Enforce: "required"}) {
		t.Errorf("resources = %+v", s.Resources)
	}
	if s.Secrets[0].Target != "OPENAI_KEY" || s.Secrets[1].Target != "X_TOKEN" {
		t.Errorf("secret targets = %q, %q; want OPENAI_KEY, X_TOKEN", s.Secrets[0].Target, s.Secrets[1].Target)
	}
	if len(p.SHA256) != 64 || p.Source != "p.yaml" {
		t.Errorf("source %q sha256 %q", p.Source, p.SHA256)
	}
}

func TestLoadResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	body := valid + "  workspace:\n    repo: ../app\n  mounts:\n    - {source: ~/docs, target: /docs}\n  evidence:\n    dir: ev\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Load(path, profile.Env{Home: "/home/u"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(dir), "app"); p.Spec.Workspace.Repo != want {
		t.Errorf("repo = %q, want %q", p.Spec.Workspace.Repo, want)
	}
	if p.Spec.Mounts[0].Source != "/home/u/docs" {
		t.Errorf("mount source = %q, want /home/u/docs", p.Spec.Mounts[0].Source)
	}
	if want := filepath.Join(dir, "ev"); p.Spec.Evidence.Dir != want {
		t.Errorf("evidence dir = %q, want %q", p.Spec.Evidence.Dir, want)
	}
}

func TestLoadFileProblems(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", profile.MaxSize/10+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "nope.yaml") + ": no such file; create one with: sourceosctl agent-machine init --profile linux-rootless --repo PATH"},
		{"directory", dir, dir + ": is a directory; give the path of a profile .yaml file"},
		{"too large", big, big + ": is larger than 1024 KiB; a profile is a short YAML file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := profile.Load(tt.path, profile.Env{Home: "/home/u"})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestResolvePath(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"~", "/home/u", ""},
		{"~/dev/app", "/home/u/dev/app", ""},
		{"/abs/../x/", "/x", ""},
		{"rel/x", "/base/rel/x", ""},
		{"~bob/x", "", "~bob/x: only ~/ (your own home) is supported, not ~user"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := profile.ResolvePath(tt.in, "/home/u", "/base")
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ResolvePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestExamples validates every shipped example and checks they hold no personal values.
func TestExamples(t *testing.T) {
	names := profiles.ExampleNames()
	for _, want := range []string{"linux-rootless", "macos-podman", "windows-wsl"} {
		if !contains(names, want) {
			t.Errorf("example %s is missing (have %v)", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, _ := profiles.Example(name)
			p, err := profile.Parse(name+".yaml", data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Metadata.Name != name {
				t.Errorf("metadata.name = %q, want %q", p.Metadata.Name, name)
			}
			if m := personal.FindString(string(data)); m != "" {
				t.Errorf("example contains %q: use ~/dev/<repo> placeholders and no secrets", m)
			}
			if p.Spec.Workspace.Repo == "" || !strings.HasPrefix(p.Spec.Workspace.Repo, "~/dev/") {
				t.Errorf("workspace.repo = %q, want a ~/dev/ placeholder", p.Spec.Workspace.Repo)
			}
		})
	}
}

// TestDefaults checks the embedded per-OS defaults are valid and safe: no network but the
// egress gateway, with no rule of its own beyond the tools' hosts, no extra mounts, no secrets.
func TestDefaults(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows", "freebsd"} {
		t.Run(goos, func(t *testing.T) {
			name, data := profiles.Default(goos)
			p, err := profile.LoadBytes(name, data, profile.Env{Home: "/home/u", WorkDir: "/w"})
			if err != nil {
				t.Fatal(err)
			}
			want := goos
			if goos == "freebsd" {
				want = "linux"
			}
			if p.Spec.Host.OS != want {
				t.Errorf("host.os = %q, want %q", p.Spec.Host.OS, want)
			}
			if p.Spec.Network.Mode != "gateway" || p.Spec.Network.Egress != nil || len(p.Spec.Mounts) != 0 || len(p.Spec.Secrets) != 0 || p.Spec.Workspace.Repo != "" {
				t.Errorf("default is not minimal: network %+v, %d mounts, %d secrets, repo %q", p.Spec.Network, len(p.Spec.Mounts), len(p.Spec.Secrets), p.Spec.Workspace.Repo)
			}
		})
	}
}

// personal matches home paths and common API-token shapes.
var personal = regexp.MustCompile(`/Users/|/home/|[A-Za-z]:\\Users|\bsk-[A-Za-z0-9_-]{8,}|\bghp_[A-Za-z0-9]{8,}`)

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestResolvePathKeepsDriveLetterPaths(t *testing.T) {
	for _, p := range []string{`C:\Users\u\dev`, `d:/x`} {
		if got, err := profile.ResolvePath(p, "/home/u", "/base"); err != nil || got != p {
			t.Errorf("ResolvePath(%q) = %q, %v; a drive-letter path is absolute", p, got, err)
		}
	}
}

// TestMountTargets: a target that would replace part of the container, or coincide with or
// nest inside another mount, is a profile error naming the line and the field.
func TestMountTargets(t *testing.T) {
	mount := func(target string) string {
		return valid + "  mounts:\n    - {source: /srv/data, target: " + target + "}\n"
	}
	tests := []struct {
		name, yaml, want string // want "" means the profile is valid
	}{
		{"under /mnt", mount("/mnt/data"), ""},
		{"under /srv", mount("/srv/x"), ""},
		{"/etc", mount("/etc"), "p.yaml:11: spec.mounts[0].target: /etc is the image's system directory /etc; mount elsewhere, e.g. under /mnt or /srv"},
		{"inside /etc", mount("/etc/ssl/certs"), "p.yaml:11: spec.mounts[0].target: /etc/ssl/certs is inside the image's system directory /etc; mount elsewhere, e.g. under /mnt or /srv"},
		{"/proc", mount("/proc"), "p.yaml:11: spec.mounts[0].target: /proc is the image's system directory /proc"},
		{"/dev/shm", mount("/dev/shm"), "p.yaml:11: spec.mounts[0].target: /dev/shm is inside the image's system directory /dev"},
		{"/run/podman-init", mount("/run/podman-init"), "is inside the image's system directory /run"},
		{"/usr/local/bin", mount("/usr/local/bin"), "is inside the image's system directory /usr"},
		{"/lib64", mount("/lib64"), "is the image's system directory /lib64"},
		{"/var covers nothing of ours but is the image's", mount("/var/tmp"), "is inside the image's system directory /var"},
		{"/tmp", mount("/tmp"), "p.yaml:11: spec.mounts[0].target: /tmp is the tmpfs for temporary files; mount elsewhere, e.g. under /mnt or /srv"},
		{"inside /tmp", mount("/tmp/cache"), "is inside the tmpfs for temporary files"},
		{"the tool home", mount("/home/agent"), "p.yaml:11: spec.mounts[0].target: /home/agent is the tool's home (a private tmpfs)"},
		{"inside the tool home", mount("/home/agent/.ssh"), "is inside the tool's home (a private tmpfs)"},
		{"covering the tool home", mount("/home"), "p.yaml:11: spec.mounts[0].target: /home would cover the tool's home (a private tmpfs) at /home/agent"},
		{"dots are cleaned", mount("/mnt/./x/../../etc"), "is the image's system directory /etc"},
		{"the workspace itself", mount("/workspace"), "p.yaml:11: spec.mounts[0].target: /workspace is already used by spec.workspace.mountPath; give each mount its own target"},
		{"inside the workspace", mount("/workspace/vendor"), "/workspace/vendor overlaps /workspace (spec.workspace.mountPath)"},
		{"two nested mounts", valid + "  mounts:\n    - {source: /srv/a, target: /mnt/a}\n    - {source: /srv/b, target: /mnt/a/b}\n",
			"p.yaml:12: spec.mounts[1].target: /mnt/a/b overlaps /mnt/a (spec.mounts[0].target)"},
		{"a workspace over a system directory", valid + "  workspace: {mountPath: /usr/src}\n",
			"p.yaml:10: spec.workspace.mountPath: /usr/src is inside the image's system directory /usr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := profile.Parse("p.yaml", []byte(tt.yaml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v\nwant %q", err, tt.want)
			}
		})
	}
}
