// Package agentmachine orchestrates governed agent sessions: it turns a profile and a request
// into a Plan, runs it through an Engine, and records what happened. It also owns the
// platform conventions (where profiles, keys and evidence live) and the errors that map to
// exit codes.
package agentmachine

import "path/filepath"

// Dirs are the per-user directories sourceosctl reads and writes.
type Dirs struct {
	Config string // profiles, signing keys
	State  string // evidence bundles, service logs
	Data   string // image manifest
}

// DirsFor applies each platform's convention: XDG on Linux (and other Unixes), Application
// Support on macOS, %AppData% / %LocalAppData% on Windows. All end in sourceos/agent-machine.
func DirsFor(goos string, getenv func(string) string, home string) Dirs {
	const sub = "sourceos/agent-machine"
	join := func(base string) string { return filepath.Join(base, filepath.FromSlash(sub)) }
	or := func(v, fallback string) string {
		if v != "" && filepath.IsAbs(v) {
			return v
		}
		return fallback
	}
	switch goos {
	case "darwin":
		support := filepath.Join(home, "Library", "Application Support")
		return Dirs{Config: join(support), State: join(filepath.Join(support, "state")), Data: join(filepath.Join(support, "data"))}
	case "windows":
		roaming := or(getenv("APPDATA"), filepath.Join(home, "AppData", "Roaming"))
		local := or(getenv("LOCALAPPDATA"), filepath.Join(home, "AppData", "Local"))
		return Dirs{Config: join(roaming), State: join(filepath.Join(local, "state")), Data: join(filepath.Join(local, "data"))}
	}
	return Dirs{
		Config: join(or(getenv("XDG_CONFIG_HOME"), filepath.Join(home, ".config"))),
		State:  join(or(getenv("XDG_STATE_HOME"), filepath.Join(home, ".local", "state"))),
		Data:   join(or(getenv("XDG_DATA_HOME"), filepath.Join(home, ".local", "share"))),
	}
}

// ProfilesDir is where `init` writes rendered profiles.
func (d Dirs) ProfilesDir() string { return filepath.Join(d.Config, "profiles") }

// EvidenceDir is the default home of evidence bundles.
func (d Dirs) EvidenceDir() string { return filepath.Join(d.State, "evidence") }
