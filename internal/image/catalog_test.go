package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/tool"
)

func TestDefaultCatalogResolves(t *testing.T) {
	c := DefaultCatalog()
	for _, name := range tool.Names() {
		if c.Tools[name] == "" {
			t.Errorf("the embedded catalog pins no %s version", name)
		}
	}
	sel, err := c.Resolve([]string{"python", "go@1.19"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) != 2 || sel[0].Stack != "go" || sel[1].Stack != "python" || sel[1].Version != c.Stacks[2].Versions[0].Version {
		t.Fatalf("Resolve = %+v, want go then python at its default version", sel)
	}
	if sel[0].Tag() != "go-1.19" {
		t.Errorf("Tag = %q", sel[0].Tag())
	}
}

func TestResolveRefusesUnknownStacksListingWhatExists(t *testing.T) {
	c := DefaultCatalog()
	for _, tc := range []struct{ spec, msg, hint string }{
		{"php", `unknown stack "php"`, "use one of: go (1.19), java (17), node (18), python (3.11), ruby (3.1), rust (1.63)"},
		{"go@1.99", `stack go has no version "1.99"`, "use one of: 1.19 (available stacks: go (1.19), java (17), node (18), python (3.11), ruby (3.1), rust (1.63))"},
	} {
		_, err := c.Resolve([]string{tc.spec})
		var in *InputError
		if !errors.As(err, &in) || in.Msg != tc.msg || in.Fix != tc.hint {
			t.Errorf("Resolve(%q) = %v (hint %q), want %q / %q", tc.spec, err, hintOf(err), tc.msg, tc.hint)
		}
	}
	if _, err := c.Resolve([]string{"go", "go@1.19"}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("a stack given twice: %v", err)
	}
}

func hintOf(err error) string {
	var in *InputError
	if errors.As(err, &in) {
		return in.Fix
	}
	return ""
}

func TestParseCatalogRejects(t *testing.T) {
	good := `{"schemaVersion":1,"suite":"bookworm","tools":{"claude-code":"1.0.0","codex":"0.1.0"},"ide":{"codeServer":"4.89.1","vscodeRipgrep":"1.15.9","ripgrepPrebuilt":"v13.0.0-10"},"stacks":[{"id":"go","versions":[{"version":"1.19","packages":["golang-go"],"check":"go version"}]}]}`
	if _, err := ParseCatalog("c.json", []byte(good)); err != nil {
		t.Fatalf("a valid catalog: %v", err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown field", `"suite"`, `"suit":"x","suite"`, `unknown field "suit"`},
		{"schema version", `"schemaVersion":1`, `"schemaVersion":2`, "schemaVersion must be 1"},
		{"tool unpinned", `"codex":"0.1.0"`, `"codex":""`, "tools.codex must pin a version"},
		{"unknown tool", `"codex":"0.1.0"`, `"codex":"0.1.0","aider":"1.0"`, "tools.aider is not a tool the image installs; the tools are claude-code, codex"},
		{"IDE unpinned", `"codeServer":"4.89.1"`, `"codeServer":""`, "ide.codeServer must pin a version"},
		{"no IDE", `"ide":{"codeServer":"4.89.1","vscodeRipgrep":"1.15.9","ripgrepPrebuilt":"v13.0.0-10"},`, ``, "ide.codeServer must pin a version"},
		{"shell in an IDE pin", `"v13.0.0-10"`, `"v13; curl x|sh"`, "ide.ripgrepPrebuilt must pin a version"},
		{"shell in a package name", `"golang-go"`, `"golang-go; rm -rf /"`, `is not a Debian package name`},
		{"package with a space", `"golang-go"`, `"golang go"`, `is not a Debian package name`},
		{"no check", `"check":"go version"`, `"check":" "`, "check is required"},
		{"duplicate id", `"stacks":[`, `"stacks":[{"id":"go","versions":[{"version":"1","packages":["a1"],"check":"x"}]},`, `must be unique`},
		{"no versions", `"versions":[{"version":"1.19","packages":["golang-go"],"check":"go version"}]`, `"versions":[]`, "lists no versions"},
		{"bad suite", `"bookworm"`, `"Bookworm 12"`, "suite must be a Debian suite name"},
		{"trailing data", good, good + `{}`, "trailing data"},
	} {
		data := strings.Replace(good, tc.from, tc.to, 1)
		_, err := ParseCatalog("c.json", []byte(data))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "c.json: ") {
			t.Errorf("%s: err = %v, want c.json: …%s…", tc.name, err, tc.want)
		}
	}
}

func TestMirrorIn(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"deb822", "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n", "http://deb.debian.org/debian"},
		{"security first", "URIs: http://security.debian.org/debian-security\nURIs: https://mirror.example.org/debian/\n", "https://mirror.example.org/debian"},
		{"one-line", "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main\n", "http://ftp.de.debian.org/debian"},
		{"not debian", "deb http://ppa.launchpad.net/x/ubuntu jammy main\n", ""},
		{"cdrom", "deb cdrom:[Debian]/ bookworm main\n", ""},
	} {
		if got := mirrorIn(tc.text); got != tc.want {
			t.Errorf("%s: mirrorIn = %q, want %q", tc.name, got, tc.want)
		}
	}
}
