package image

import (
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/images"
)

// FuzzCatalog: no input makes the catalog parser panic, and any catalog it accepts hands the
// stack overlay only plain Debian package names and non-empty checks — nothing a shell would
// interpret in the unquoted apt-get argument list.
func FuzzCatalog(f *testing.F) {
	data, _ := images.Files.ReadFile("catalog.json")
	f.Add(data)
	f.Add([]byte(`{"schemaVersion":1,"suite":"bookworm","tools":{"claude-code":"1","codex":"2"},"stacks":[]}`))
	f.Add([]byte(`{"schemaVersion":1,"suite":"bookworm","tools":{"claude-code":"1","codex":"2"},"stacks":[{"id":"x","versions":[{"version":"1","packages":["a;b"],"check":"c"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCatalog("fuzz.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, s := range c.Stacks {
			sel, err := c.Resolve([]string{s.ID})
			if err != nil || len(sel) != 1 {
				t.Fatalf("an accepted stack %q does not resolve: %v", s.ID, err)
			}
			for _, p := range sel[0].Packages {
				if strings.ContainsAny(p, " \t\n;&|$`'\"\\<>(){}*?#") {
					t.Fatalf("package %q would reach the shell", p)
				}
			}
			if strings.TrimSpace(sel[0].Check) == "" {
				t.Fatal("an accepted version has no check")
			}
		}
	})
}
