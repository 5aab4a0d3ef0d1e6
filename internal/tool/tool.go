// Package tool is the one table of the agent tools sourceosctl knows: their names on the
// command line and in profiles, their binaries, the arguments that make the container (not
// the tool's own sandbox) the boundary, and the image build argument that pins each version.
// Every other package asks this one instead of spelling a tool's name.
package tool

// Names of the built-in tools, and of the shell, which is not a tool but runs like one.
const (
	ClaudeCode = "claude-code"
	Codex      = "codex"
	Shell      = "shell"
)

// Def is a built-in tool.
type Def struct {
	Name   string   // as on the command line and in profiles
	Binary string   // the executable inside the image
	Args   []string // always passed first: they turn the tool's own sandbox off
	// Note says, in the plan, why Args are there.
	Note string
	// BuildArg is the image build argument that pins the tool's version (images/tools).
	BuildArg string
	// Hosts are the destinations the tool itself needs, for the egress gateway's per-tool
	// preset: each names its purpose and where it comes from.
	Hosts []Host
	// StateEnv names the variable that moves the tool's configuration directory (its login,
	// settings and history) to where the session keeps its state volume.
	StateEnv string
}

// Host is one destination a tool needs or contacts. Purpose is api, auth, telemetry or
// observed; the preset allows api and auth hosts and lists the others without allowing them
// (a profile or --allow-host can). Source says where the host comes from.
type Host struct {
	Host    string `json:"host"` // host:port as an egress rule
	Purpose string `json:"purpose"`
	Source  string `json:"source"`
}

// Purposes of a tool's hosts: the preset allows api and auth hosts only. observed hosts are
// ones the tool was seen to contact in a session that no documentation names.
const (
	PurposeAPI       = "api"
	PurposeAuth      = "auth"
	PurposeTelemetry = "telemetry"
	PurposeObserved  = "observed"
)

// Allowed reports whether the tool's preset allows the host (its API and sign-in hosts).
func (h Host) Allowed() bool { return h.Purpose == PurposeAPI || h.Purpose == PurposeAuth }

// builtins is ordered as help texts and messages list the tools. Both tools ship a Linux
// sandbox of their own (bubblewrap / Landlock) that cannot start in an unprivileged,
// capability-less container, so each definition turns it off and says so in the plan.
var builtins = [...]Def{
	{
		Name:     ClaudeCode,
		Binary:   "claude",
		Args:     []string{"--settings", `{"sandbox":{"enabled":false}}`},
		Note:     "claude-code's own bubblewrap sandbox cannot start without capabilities; it is turned off (sandbox.enabled=false) and this container is the boundary",
		BuildArg: "CLAUDE_CODE_VERSION",
		StateEnv: "CLAUDE_CONFIG_DIR",
		// Claude Code's documentation, "Enterprise network configuration" (network access
		// requirements): the API, and the two sign-in hosts for claude.ai and Console
		// accounts. Its "Data usage" page names the telemetry (Statsig) and error reporting
		// (Sentry) hosts; CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC turns both off.
		Hosts: []Host{
			{Host: "api.anthropic.com:443", Purpose: PurposeAPI, Source: "code.claude.com/docs/en/network-config"},
			{Host: "claude.ai:443", Purpose: PurposeAuth, Source: "code.claude.com/docs/en/network-config"},
			{Host: "platform.claude.com:443", Purpose: PurposeAuth, Source: "code.claude.com/docs/en/network-config"},
			{Host: "statsig.anthropic.com:443", Purpose: PurposeTelemetry, Source: "code.claude.com/docs/en/data-usage"},
			{Host: "sentry.io:443", Purpose: PurposeTelemetry, Source: "code.claude.com/docs/en/data-usage"},
		},
	},
	{
		Name:     Codex,
		Binary:   "codex",
		Args:     []string{"--sandbox", "danger-full-access"},
		Note:     "codex's own bubblewrap/Landlock sandbox cannot start without capabilities; it runs with --sandbox danger-full-access and this container is the boundary",
		BuildArg: "CODEX_VERSION",
		StateEnv: "CODEX_HOME",
		// The Codex CLI's defaults in openai/codex (codex-rs): the OpenAI API for API-key
		// use, chatgpt.com's backend API for ChatGPT sign-in, and auth.openai.com, the
		// sign-in issuer. Its OpenTelemetry export is off unless configured.
		Hosts: []Host{
			{Host: "api.openai.com:443", Purpose: PurposeAPI, Source: "openai/codex codex-rs: default OpenAI provider base URL"},
			{Host: "chatgpt.com:443", Purpose: PurposeAPI, Source: "openai/codex codex-rs: ChatGPT sign-in backend (backend-api/codex)"},
			{Host: "auth.openai.com:443", Purpose: PurposeAuth, Source: "openai/codex codex-rs login: the sign-in issuer"},
			// Seen in the egress log of a codex-cli 0.169.0 session (exec, API key, fake API):
			// contacted at start and at exit; the turn completes without them.
			{Host: "ab.chatgpt.com:443", Purpose: PurposeObserved, Source: "egress log of a codex-cli 0.169.0 session"},
			{Host: "github.com:443", Purpose: PurposeObserved, Source: "egress log of a codex-cli 0.169.0 session"},
			{Host: "api.github.com:443", Purpose: PurposeObserved, Source: "egress log of a codex-cli 0.169.0 session"},
		},
	},
}

// Builtin returns the built-in tool called name.
func Builtin(name string) (Def, bool) {
	for _, d := range builtins {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// Builtins lists the built-in tools in their order. The result is a copy.
func Builtins() []Def {
	out := make([]Def, len(builtins))
	copy(out, builtins[:])
	for i := range out {
		out[i].Args = append([]string(nil), out[i].Args...)
		out[i].Hosts = append([]Host(nil), out[i].Hosts...)
	}
	return out
}

// Names lists the built-in tools' names in their order.
func Names() []string {
	out := make([]string, len(builtins))
	for i, d := range builtins {
		out[i] = d.Name
	}
	return out
}

// Reserved reports whether name cannot be given to a custom tool.
func Reserved(name string) bool {
	_, builtin := Builtin(name)
	return builtin || name == Shell
}
