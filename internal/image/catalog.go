// Package image gets workspace images onto the Podman host and keeps track of them: it builds
// the default image (debootstrap base, tool layer, stack overlays from the runtime catalog),
// fetches images from registries and checksummed archives, and records each in a manifest so
// `update` fetches only what changed.
package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/sourceos/sourceosctl/images"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// Catalog pins the tool versions of the default image and lists the stacks (language
// runtimes) an overlay can add. The embedded images/catalog.json is the default; a file given
// with --catalog replaces it.
type Catalog struct {
	SchemaVersion int               `json:"schemaVersion"`
	Suite         string            `json:"suite"`
	Tools         map[string]string `json:"tools"`
	IDE           IDE               `json:"ide"`
	Stacks        []Stack           `json:"stacks"`
	Source        string            `json:"-"` // where it was read from
}

// IDE pins the browser IDE `image build --ide` adds: code-server from npm, built against the
// image's Node.js (its native modules compiled there: their prebuilt binaries are GitHub
// downloads). VSCodeRipgrep and RipgrepPrebuilt are what that code-server release expects —
// the @vscode/ripgrep version in its lib/vscode/npm-shrinkwrap.json and the ripgrep-prebuilt
// tag in its postinstall — so its download cache can be seeded with Debian's ripgrep.
type IDE struct {
	CodeServer      string `json:"codeServer"`
	VSCodeRipgrep   string `json:"vscodeRipgrep"`
	RipgrepPrebuilt string `json:"ripgrepPrebuilt"`
}

// buildArgs are the IDE stage's build arguments.
func (i IDE) buildArgs() map[string]string {
	return map[string]string{"CODE_SERVER_VERSION": i.CodeServer, "VSCODE_RIPGREP_VERSION": i.VSCodeRipgrep, "RIPGREP_PREBUILT_TAG": i.RipgrepPrebuilt}
}

// Stack is one runtime and the versions the catalog can install.
type Stack struct {
	ID          string         `json:"id"`
	Description string         `json:"description,omitempty"`
	Versions    []StackVersion `json:"versions"`
}

// StackVersion installs one version: Debian packages, then Check (a shell command that fails
// unless the installed runtime is this version).
type StackVersion struct {
	Version  string   `json:"version"`
	Packages []string `json:"packages"`
	Check    string   `json:"check"`
}

// Selected is a stack version chosen for a build.
type Selected struct {
	Stack string
	StackVersion
}

// Tag is how a selection appears in an image tag: go-1.19.
func (s Selected) Tag() string { return s.Stack + "-" + s.Version }

var (
	idPattern      = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`)
	// Debian package names (policy §5.6.1), optionally with =version; nothing a shell would
	// interpret, since the overlay passes them unquoted to apt-get.
	packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[0-9A-Za-z.+~:-]+)?$`)
	suitePattern   = regexp.MustCompile(`^[a-z]+$`)
)

// ToolVersions lists the pinned tool versions for messages: "claude-code 1.2.3, codex 4.5.6".
func (c *Catalog) ToolVersions() string {
	var parts []string
	for _, name := range tool.Names() {
		parts = append(parts, name+" "+c.Tools[name])
	}
	return strings.Join(parts, ", ")
}

// buildArgs are the tool layer's build arguments: each tool's version under its BuildArg.
func (c *Catalog) buildArgs() map[string]string {
	args := map[string]string{}
	for _, d := range tool.Builtins() {
		args[d.BuildArg] = c.Tools[d.Name]
	}
	return args
}

// DefaultCatalog is the catalog embedded in the binary.
func DefaultCatalog() *Catalog {
	data, err := images.Files.ReadFile("catalog.json")
	if err != nil {
		panic("embedded catalog missing: " + err.Error())
	}
	c, err := ParseCatalog("embedded images/catalog.json", data)
	if err != nil {
		panic("embedded catalog invalid: " + err.Error())
	}
	return c
}

// LoadCatalog reads a catalog file that replaces the embedded one.
func LoadCatalog(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &InputError{Msg: fmt.Sprintf("read catalog: %v", err), Fix: "pass a JSON file shaped like images/catalog.json"}
	}
	return ParseCatalog(path, data)
}

// ParseCatalog decodes and checks a catalog strictly: unknown fields, bad names and package
// lists that are not plain Debian package names are errors.
func ParseCatalog(name string, data []byte) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Catalog
	fail := func(format string, args ...any) error {
		return &InputError{Msg: name + ": " + fmt.Sprintf(format, args...), Fix: "compare with the embedded catalog: sourceosctl agent-machine image stacks -o json"}
	}
	if err := dec.Decode(&c); err != nil {
		return nil, fail("not a valid catalog: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("trailing data after the catalog object")
	}
	if c.SchemaVersion != 1 {
		return nil, fail("schemaVersion must be 1, got %d", c.SchemaVersion)
	}
	if !suitePattern.MatchString(c.Suite) {
		return nil, fail("suite must be a Debian suite name such as bookworm, got %q", c.Suite)
	}
	for _, name := range tool.Names() {
		if v := c.Tools[name]; !versionPattern.MatchString(v) {
			return nil, fail("tools.%s must pin a version such as 1.2.3, got %q", name, v)
		}
	}
	for _, pin := range [][2]string{{"codeServer", c.IDE.CodeServer}, {"vscodeRipgrep", c.IDE.VSCodeRipgrep}, {"ripgrepPrebuilt", c.IDE.RipgrepPrebuilt}} {
		if !versionPattern.MatchString(pin[1]) {
			return nil, fail("ide.%s must pin a version such as 1.2.3, got %q", pin[0], pin[1])
		}
	}
	for name := range c.Tools {
		if _, ok := tool.Builtin(name); !ok {
			return nil, fail("tools.%s is not a tool the image installs; the tools are %s", name, strings.Join(tool.Names(), ", "))
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Stacks {
		if !idPattern.MatchString(s.ID) || seen[s.ID] {
			return nil, fail("stacks[%d].id %q must be unique, lowercase letters, digits or '-'", i, s.ID)
		}
		seen[s.ID] = true
		if len(s.Versions) == 0 {
			return nil, fail("stacks[%d] (%s) lists no versions", i, s.ID)
		}
		vseen := map[string]bool{}
		for j, v := range s.Versions {
			at := fmt.Sprintf("stacks[%d].versions[%d]", i, j)
			if !versionPattern.MatchString(v.Version) || vseen[v.Version] {
				return nil, fail("%s.version %q must be unique and look like 1.22", at, v.Version)
			}
			vseen[v.Version] = true
			if len(v.Packages) == 0 {
				return nil, fail("%s lists no packages", at)
			}
			for _, p := range v.Packages {
				if !packagePattern.MatchString(p) {
					return nil, fail("%s.packages: %q is not a Debian package name", at, p)
				}
			}
			if strings.TrimSpace(v.Check) == "" {
				return nil, fail("%s.check is required: a command that fails unless this version is installed", at)
			}
		}
	}
	c.Source = name
	return &c, nil
}

// Available lists the stacks and their versions, for error messages and `image stacks`.
func (c *Catalog) Available() string {
	var parts []string
	for _, s := range c.Stacks {
		var vs []string
		for _, v := range s.Versions {
			vs = append(vs, v.Version)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", s.ID, strings.Join(vs, ", ")))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// Resolve turns --stack values (go, go@1.19) into catalog entries. The first version listed
// is a stack's default. Unknown stacks or versions fail, listing what is available.
func (c *Catalog) Resolve(specs []string) ([]Selected, error) {
	var out []Selected
	seen := map[string]bool{}
	for _, spec := range specs {
		id, version, _ := strings.Cut(spec, "@")
		var stack *Stack
		for i := range c.Stacks {
			if c.Stacks[i].ID == id {
				stack = &c.Stacks[i]
			}
		}
		if stack == nil {
			return nil, &InputError{Msg: fmt.Sprintf("unknown stack %q", id), Fix: "use one of: " + c.Available()}
		}
		if seen[id] {
			return nil, &InputError{Msg: fmt.Sprintf("stack %q is given twice", id), Fix: "give each stack once"}
		}
		seen[id] = true
		chosen := &stack.Versions[0]
		if version != "" {
			chosen = nil
			for i := range stack.Versions {
				if stack.Versions[i].Version == version {
					chosen = &stack.Versions[i]
				}
			}
			if chosen == nil {
				var vs []string
				for _, v := range stack.Versions {
					vs = append(vs, v.Version)
				}
				return nil, &InputError{Msg: fmt.Sprintf("stack %s has no version %q", id, version),
					Fix: fmt.Sprintf("use one of: %s (available stacks: %s)", strings.Join(vs, ", "), c.Available())}
			}
		}
		out = append(out, Selected{Stack: id, StackVersion: *chosen})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stack < out[j].Stack })
	return out, nil
}
