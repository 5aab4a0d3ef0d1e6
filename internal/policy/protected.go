// Package policy decides what a session may have: which mounts are allowed (and why others
// are refused), which secrets pass the secrets door, the network, capabilities and limits.
// Its Decision has a canonical JSON form whose SHA-256 is the policy hash.
package policy

import (
	"path/filepath"
	"strings"
)

// Protected is one built-in protected path. Paths starting with ~/ are relative to the home
// directory; $RUNTIME is XDG_RUNTIME_DIR (or /run/user/UID).
type Protected struct {
	Path string
	What string   // what it holds, for messages
	OS   []string // empty means every OS
	// Exact protects the path itself but not what is below it: / and the home directory,
	// whose subdirectories (a repository under ~/dev) are what sessions are for.
	Exact bool
}

// ProtectedPaths is the one list of paths that are never mounted unless a profile marks the
// mount allowProtected and the command line repeats it with --allow-protected. Any parent of
// one of them (such as ~/.config or /var) is refused too, and so is the home directory itself.
var ProtectedPaths = []Protected{
	{Path: "/", What: "the root file system", Exact: true},
	{Path: "~", What: "the home directory", Exact: true},
	{Path: "~/.ssh", What: "SSH keys"},
	{Path: "~/.gnupg", What: "GnuPG keys"},
	{Path: "~/.aws", What: "AWS credentials"},
	{Path: "~/.azure", What: "Azure credentials"},
	{Path: "~/.config/gcloud", What: "Google Cloud credentials"},
	{Path: "~/.kube", What: "Kubernetes credentials"},
	{Path: "~/.docker", What: "Docker credentials and socket"},
	{Path: "~/.config/gh", What: "GitHub CLI tokens"},
	{Path: "~/.netrc", What: "netrc credentials"},
	{Path: "~/.git-credentials", What: "git credentials"},
	{Path: "~/.password-store", What: "pass password store"},
	{Path: "~/.local/share/keyrings", What: "GNOME keyrings"},
	{Path: "~/Library/Keychains", What: "macOS keychains"},
	{Path: "~/.config/containers", What: "Podman configuration and auth"},
	{Path: "~/.local/share/containers", What: "Podman storage"},
	// Browser profiles.
	{Path: "~/.config/google-chrome", What: "Chrome profile", OS: []string{"linux"}},
	{Path: "~/.config/chromium", What: "Chromium profile", OS: []string{"linux"}},
	{Path: "~/.mozilla", What: "Firefox profile", OS: []string{"linux"}},
	{Path: "~/.config/microsoft-edge", What: "Edge profile", OS: []string{"linux"}},
	{Path: "~/.config/BraveSoftware", What: "Brave profile", OS: []string{"linux"}},
	{Path: "~/Library/Application Support/Google/Chrome", What: "Chrome profile", OS: []string{"darwin"}},
	{Path: "~/Library/Application Support/Chromium", What: "Chromium profile", OS: []string{"darwin"}},
	{Path: "~/Library/Application Support/Firefox", What: "Firefox profile", OS: []string{"darwin"}},
	{Path: "~/Library/Safari", What: "Safari profile", OS: []string{"darwin"}},
	{Path: "~/Library/Application Support/Microsoft Edge", What: "Edge profile", OS: []string{"darwin"}},
	{Path: "~/Library/Application Support/BraveSoftware", What: "Brave profile", OS: []string{"darwin"}},
	{Path: "~/AppData/Local/Google/Chrome/User Data", What: "Chrome profile", OS: []string{"windows"}},
	{Path: "~/AppData/Local/Chromium/User Data", What: "Chromium profile", OS: []string{"windows"}},
	{Path: "~/AppData/Roaming/Mozilla/Firefox", What: "Firefox profile", OS: []string{"windows"}},
	{Path: "~/AppData/Local/Microsoft/Edge/User Data", What: "Edge profile", OS: []string{"windows"}},
	{Path: "~/AppData/Local/BraveSoftware", What: "Brave profile", OS: []string{"windows"}},
	// Container engine sockets: whoever holds one controls every container.
	{Path: "/var/run/docker.sock", What: "the Docker socket"},
	{Path: "/run/docker.sock", What: "the Docker socket"},
	{Path: "/run/podman/podman.sock", What: "the rootful Podman socket"},
	{Path: "$RUNTIME/podman/podman.sock", What: "the rootless Podman socket"},
	{Path: "$RUNTIME/docker.sock", What: "the rootless Docker socket"},
	// System directories.
	{Path: "/etc", What: "system configuration"},
	{Path: "/var/run", What: "runtime state and sockets"},
	{Path: "/run", What: "runtime state and sockets"},
	{Path: "/proc", What: "process information"},
	{Path: "/sys", What: "kernel interfaces"},
	{Path: "/dev", What: "devices"},
}

// protectedPath is a ProtectedPaths entry expanded for one host, in lexical and (when it
// exists) symlink-resolved form.
type protectedPath struct {
	Protected
	lexical  string
	resolved string
}

func (h Host) protected() []protectedPath {
	var out []protectedPath
	for _, p := range append(append([]Protected{}, ProtectedPaths...), h.Extra...) {
		if len(p.OS) > 0 && !contains(p.OS, h.OS) {
			continue
		}
		path := p.Path
		switch {
		case path == "~":
			path = h.Home
		case strings.HasPrefix(path, "~/"):
			path = filepath.Join(h.Home, filepath.FromSlash(path[2:]))
		case strings.HasPrefix(path, "$RUNTIME/"):
			path = filepath.Join(h.RuntimeDir, filepath.FromSlash(strings.TrimPrefix(path, "$RUNTIME/")))
		default:
			path = filepath.FromSlash(path)
		}
		path = filepath.Clean(path)
		out = append(out, protectedPath{Protected: p, lexical: path, resolved: h.resolveExisting(path)})
	}
	return out
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	if dir == string(filepath.Separator) {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
