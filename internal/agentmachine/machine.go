package agentmachine

import (
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

// initHint recreates the machine sharing only ~/dev, under its own provider.
func initHint(m machine.Info, goos string) string {
	plain := func(a []string) string { return strings.Join(a, " ") } // ~ must stay unquoted for the shell
	rm := machine.Command{Provider: m.Provider, Args: []string{"machine", "rm", m.Name}}.Shell(goos, plain)
	init := machine.Command{Provider: m.Provider, Args: []string{"machine", "init", m.Name, "--volume", "~/dev:~/dev"}}.Shell(goos, plain)
	if goos == "windows" {
		return rm + "; " + init
	}
	return rm + " && " + init
}
