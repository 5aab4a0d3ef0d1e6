// Package profiles embeds the example AgentMachineProfiles and the per-OS defaults, so that a
// user with no profile file still gets a working, safe session and `init --profile NAME` can
// render an example by name.
package profiles

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed examples/*.yaml defaults/*.yaml
var files embed.FS

// Example returns the named example's YAML (name without ".yaml").
func Example(name string) ([]byte, bool) {
	b, err := files.ReadFile("examples/" + name + ".yaml")
	return b, err == nil
}

// ExampleNames lists the embedded examples, sorted.
func ExampleNames() []string {
	entries, _ := fs.ReadDir(files, "examples")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Default returns the default profile for goos ("linux", "darwin", "windows"); other systems
// get the Linux one, since Podman runs natively there too.
func Default(goos string) (name string, data []byte) {
	switch goos {
	case "darwin", "windows":
	default:
		goos = "linux"
	}
	name = "defaults/" + goos + ".yaml"
	data, _ = files.ReadFile(name)
	return name, data
}
