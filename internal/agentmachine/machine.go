package agentmachine

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// wideShares names a share that exposes the whole home directory (or /Users) to the VM.
func wideShares(m machine.Info, getenv func(string) string) string {
	home := getenv("HOME")
	for _, s := range m.Mounts {
		clean := filepath.ToSlash(filepath.Clean(s))
		if clean == "/Users" || clean == "/home" || clean == "/" || (home != "" && clean == filepath.ToSlash(filepath.Clean(home))) ||
			strings.EqualFold(clean, "C:/Users") {
			return s
		}
	}
	return ""
}

func initHint(m machine.Info) string {
	return fmt.Sprintf("podman machine rm %s && podman machine init %s --volume ~/dev:~/dev", m.Name, m.Name)
}
