// Package devcontainer reads a devcontainer.json (the Development Container Specification's
// JSON with comments and trailing commas) and decides, field by field, what a governed
// profile can take from it. What would widen the boundary — a command run on the host,
// podman run flags, privileges, capabilities, security options, mounts, features from a
// registry, ports published on the host — is refused with its reason; nothing of it reaches
// the profile.
package devcontainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/sourceos/sourceosctl/internal/fileerr"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// Config is a devcontainer.json: every property of the specification, so that a misspelt one
// is an error rather than silently ignored.
type Config struct {
	Schema                      string                     `json:"$schema"`
	Name                        string                     `json:"name"`
	Image                       string                     `json:"image"`
	Build                       *Build                     `json:"build"`
	DockerFile                  string                     `json:"dockerFile"` // the specification's older spelling
	Context                     string                     `json:"context"`
	DockerComposeFile           json.RawMessage            `json:"dockerComposeFile"`
	Service                     string                     `json:"service"`
	RunServices                 []string                   `json:"runServices"`
	WorkspaceFolder             string                     `json:"workspaceFolder"`
	WorkspaceMount              string                     `json:"workspaceMount"`
	ContainerEnv                map[string]string          `json:"containerEnv"`
	RemoteEnv                   map[string]*string         `json:"remoteEnv"`
	ContainerUser               string                     `json:"containerUser"`
	RemoteUser                  string                     `json:"remoteUser"`
	UpdateRemoteUserUID         *bool                      `json:"updateRemoteUserUID"`
	UserEnvProbe                string                     `json:"userEnvProbe"`
	OverrideCommand             *bool                      `json:"overrideCommand"`
	ShutdownAction              string                     `json:"shutdownAction"`
	Init                        *bool                      `json:"init"`
	Privileged                  *bool                      `json:"privileged"`
	CapAdd                      []string                   `json:"capAdd"`
	SecurityOpt                 []string                   `json:"securityOpt"`
	Mounts                      json.RawMessage            `json:"mounts"`
	Features                    map[string]json.RawMessage `json:"features"`
	OverrideFeatureInstallOrder []string                   `json:"overrideFeatureInstallOrder"`
	Customizations              json.RawMessage            `json:"customizations"`
	ForwardPorts                []json.RawMessage          `json:"forwardPorts"`
	PortsAttributes             json.RawMessage            `json:"portsAttributes"`
	OtherPortsAttributes        json.RawMessage            `json:"otherPortsAttributes"`
	AppPort                     json.RawMessage            `json:"appPort"`
	RunArgs                     []string                   `json:"runArgs"`
	InitializeCommand           json.RawMessage            `json:"initializeCommand"`
	OnCreateCommand             json.RawMessage            `json:"onCreateCommand"`
	UpdateContentCommand        json.RawMessage            `json:"updateContentCommand"`
	PostCreateCommand           json.RawMessage            `json:"postCreateCommand"`
	PostStartCommand            json.RawMessage            `json:"postStartCommand"`
	PostAttachCommand           json.RawMessage            `json:"postAttachCommand"`
	WaitFor                     string                     `json:"waitFor"`
	HostRequirements            json.RawMessage            `json:"hostRequirements"`

	// std is the file as standard JSON (same offsets), for the lines of later errors.
	std []byte
}

// Build is an image built from a Dockerfile.
type Build struct {
	Dockerfile string            `json:"dockerfile"`
	Context    string            `json:"context"`
	Args       map[string]string `json:"args"`
	Target     string            `json:"target"`
	Options    []string          `json:"options"`
	CacheFrom  json.RawMessage   `json:"cacheFrom"`
}

// Field is one property's fate: taken into the profile, refused, or left out, and why.
type Field struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Import is what a profile takes from a devcontainer.json.
type Import struct {
	File string `json:"file"`
	// Image is the image to run; with Dockerfile set, the one `image build --dockerfile`
	// makes from it.
	Image      string            `json:"image"`
	Dockerfile string            `json:"dockerfile,omitempty"`
	Context    string            `json:"context,omitempty"`
	BuildArgs  map[string]string `json:"buildArgs,omitempty"`
	MountPath  string            `json:"mountPath,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Ports      []int             `json:"ports,omitempty"`
	PostCreate []profile.Command `json:"postCreate,omitempty"`
	PostStart  []profile.Command `json:"postStart,omitempty"`

	Taken   []Field `json:"taken"`
	Refused []Field `json:"refused"`
	Ignored []Field `json:"ignored"`
}

// InputError is a devcontainer.json that cannot be imported at all: where and why.
type InputError = fileerr.Error

// maxFile bounds what is read: a devcontainer.json is a few kilobytes.
const maxFile = 1 << 20

// Read reads and imports the devcontainer.json at path, of the repository at repo. name names
// the image built from a Dockerfile (localhost/sourceos/devcontainer-NAME:latest).
func Read(path, repo, name string) (*Import, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &InputError{File: path, Err: err, Fix: "give the path of a devcontainer.json (usually .devcontainer/devcontainer.json)"}
	}
	if len(data) > maxFile {
		return nil, &InputError{File: path, Err: fmt.Errorf("is %d bytes; a devcontainer.json is at most %d", len(data), maxFile)}
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return cfg.Import(path, repo, name)
}

// Parse decodes a devcontainer.json strictly: comments and trailing commas are allowed (the
// specification's JSONC), an unknown or repeated property is an error naming its line.
func Parse(file string, data []byte) (*Config, error) {
	std, err := hujson.Standardize(data) // comments and commas become spaces: offsets hold
	if err != nil {
		msg, line := strings.TrimPrefix(err.Error(), "hujson: "), 0
		if m := hujsonWhere.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return nil, &InputError{File: file, Line: line, Err: errors.New("not JSON with comments: " + msg)}
	}
	if dup := duplicateKey(std); dup != "" {
		return nil, &InputError{File: file, Line: keyLine(std, dup), Err: fmt.Errorf("property %q is given twice", dup), Fix: "keep one"}
	}
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, &InputError{File: file, Line: lineAt(std, int(syn.Offset)), Err: errors.New("not JSON: " + syn.Error())}
		case errors.As(err, &typ):
			return nil, &InputError{File: file, Line: lineAt(std, int(typ.Offset)), Err: fmt.Errorf("%s: must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)}
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			return nil, &InputError{File: file, Line: keyLine(std, name), Err: fmt.Errorf("unknown property %q", name),
				Fix: "check its spelling against the Development Container Specification (containers.dev/implementors/json_reference)"}
		}
		return nil, &InputError{File: file, Err: err}
	}
	cfg.std = std
	return &cfg, nil
}

// Import decides each property. A compose-based configuration describes several containers
// and cannot be imported at all.
func (c *Config) Import(file, repo, name string) (*Import, error) {
	if len(c.DockerComposeFile) > 0 || c.Service != "" || len(c.RunServices) > 0 {
		return nil, &InputError{File: file, Err: errors.New("is compose-based (dockerComposeFile, service): it describes several containers, and a governed session is one"),
			Fix: "point image or build.dockerfile at the service's image in a devcontainer.json of its own"}
	}
	x := &Import{File: file, Env: map[string]string{}}
	take := func(f, reason string) { x.Taken = append(x.Taken, Field{f, reason}) }
	refuse := func(f, reason string) { x.Refused = append(x.Refused, Field{f, reason}) }
	ignore := func(f, reason string) { x.Ignored = append(x.Ignored, Field{f, reason}) }

	dir := filepath.Dir(file)
	dockerfile, context := c.DockerFile, c.Context
	var args map[string]string
	if c.Build != nil {
		dockerfile, context, args = c.Build.Dockerfile, c.Build.Context, c.Build.Args
		if c.Build.Target != "" {
			ignore("build.target", "the whole Dockerfile is built")
		}
		if len(c.Build.Options) > 0 {
			refuse("build.options", "passes podman build flags (--network host, --volume …) that would widen the build")
		}
		if len(c.Build.CacheFrom) > 0 {
			ignore("build.cacheFrom", "images are built from the local store; nothing is pulled for a cache")
		}
	}
	switch {
	case c.Image != "" && dockerfile != "":
		return nil, &InputError{File: file, Err: errors.New("sets both image and build.dockerfile"), Fix: "keep one"}
	case c.Image != "":
		x.Image = c.Image
		take("image", "spec.image.ref")
	case dockerfile != "":
		if context == "" {
			context = "."
		}
		x.Dockerfile, x.Context = filepath.Join(dir, dockerfile), filepath.Join(dir, context)
		// The build runs with the network and reads its context: both stay in the repository.
		for _, p := range []struct{ field, path string }{{"build.dockerfile", x.Dockerfile}, {"build.context", x.Context}} {
			if !inside(repo, p.path) {
				return nil, &InputError{File: file, Line: keyLine(c.std, strings.TrimPrefix(p.field, "build.")), Err: fmt.Errorf("%s %s is outside the repository %s", p.field, p.path, repo),
					Fix: "keep the Dockerfile and its context inside the repository: a build reads its context and runs with the network"}
			}
		}
		x.BuildArgs = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(args)) {
			switch v := args[k]; {
			case localEnv.MatchString(v):
				refuse("build.args."+k, "copies a variable of the host's environment into the build")
			case profile.SensitiveEnv.MatchString(k):
				refuse("build.args."+k, "looks like a credential, which would stay in the image's history")
			default:
				x.BuildArgs[k] = v
				take("build.args."+k, "a build argument of image build --dockerfile")
			}
		}
		x.Image = "localhost/sourceos/devcontainer-" + name + ":latest"
		take("build.dockerfile", "built by image build --dockerfile into "+x.Image+", with sourceosctl's tools on top")
	default:
		return nil, &InputError{File: file, Err: errors.New("names no image (image, or build.dockerfile)"), Fix: "add one"}
	}

	if c.WorkspaceFolder != "" {
		if !strings.HasPrefix(c.WorkspaceFolder, "/") {
			return nil, &InputError{File: file, Line: keyLine(c.std, "workspaceFolder"), Err: fmt.Errorf("workspaceFolder %q is not an absolute path in the container", c.WorkspaceFolder)}
		}
		x.MountPath = c.WorkspaceFolder
		take("workspaceFolder", "spec.workspace.mountPath")
	}
	subst := func(v string) string {
		return strings.NewReplacer("${containerWorkspaceFolder}", firstNonEmpty(x.MountPath, "/workspace"),
			"${containerWorkspaceFolderBasename}", filepath.Base(firstNonEmpty(x.MountPath, "/workspace"))).Replace(v)
	}
	env := func(field string, vars map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			v := vars[k]
			switch {
			case localEnv.MatchString(v):
				refuse(field+"."+k, "copies a variable of the host's environment into the container; a credential goes under spec.secrets, anything else as a plain value")
			case profile.SensitiveEnv.MatchString(k):
				refuse(field+"."+k, "looks like a credential, which a profile never holds as plain text; declare it under spec.secrets")
			case reserved(k):
				refuse(field+"."+k, "is set by sourceosctl itself")
			default:
				x.Env[k] = subst(v)
				take(field+"."+k, "spec.env")
			}
		}
	}
	env("containerEnv", c.ContainerEnv)
	remote := map[string]string{}
	for k, v := range c.RemoteEnv {
		if v != nil {
			remote[k] = *v
		}
	}
	env("remoteEnv", remote)

	for i, raw := range c.ForwardPorts {
		var n int
		if err := json.Unmarshal(raw, &n); err == nil && n >= 1 && n <= 65535 {
			x.Ports = append(x.Ports, n)
			take(fmt.Sprintf("forwardPorts[%d]", i), fmt.Sprintf("spec.workspace.ports: serve serves %d on 127.0.0.1 only", n))
		} else {
			var hostPort string
			if json.Unmarshal(raw, &hostPort) == nil && strings.Contains(hostPort, ":") {
				refuse(fmt.Sprintf("forwardPorts[%d]", i), fmt.Sprintf("%s names another container's port (host:port); a session is one container", raw))
			} else {
				refuse(fmt.Sprintf("forwardPorts[%d]", i), fmt.Sprintf("%s is not a port (1-65535)", raw))
			}
		}
	}

	for _, lc := range []struct {
		field string
		raw   json.RawMessage
		post  *[]profile.Command
	}{{"onCreateCommand", c.OnCreateCommand, &x.PostCreate}, {"updateContentCommand", c.UpdateContentCommand, &x.PostCreate},
		{"postCreateCommand", c.PostCreateCommand, &x.PostCreate}, {"postStartCommand", c.PostStartCommand, &x.PostStart}} {
		if len(lc.raw) == 0 {
			continue
		}
		cmds, err := commands(lc.field, lc.raw)
		if err != nil {
			return nil, &InputError{File: file, Line: keyLine(c.std, lc.field), Err: err}
		}
		for i := range cmds {
			for j, arg := range cmds[i].Command {
				cmds[i].Command[j] = subst(arg)
			}
		}
		*lc.post = append(*lc.post, cmds...)
		where := "spec.workspace.postCreate: run once in the workspace when it is created, as a governed join"
		if lc.post == &x.PostStart {
			where = "spec.workspace.postStart: run in the workspace each time it comes up, as a governed join"
		}
		take(lc.field, where)
	}

	// What would widen the boundary.
	if len(c.InitializeCommand) > 0 {
		refuse("initializeCommand", "runs on the host, before the container exists; sourceosctl runs nothing of a repository's on the host")
	}
	if len(c.RunArgs) > 0 {
		refuse("runArgs", "passes podman run flags, which can add capabilities, devices, mounts or the host's namespaces; the profile alone says what a container gets")
	}
	if c.Privileged != nil && *c.Privileged {
		refuse("privileged", "a privileged container has every capability and the host's devices")
	}
	if len(c.CapAdd) > 0 {
		refuse("capAdd", "adds capabilities ("+strings.Join(c.CapAdd, ", ")+"); a session's are all dropped")
	}
	if len(c.SecurityOpt) > 0 {
		refuse("securityOpt", "security options ("+strings.Join(c.SecurityOpt, ", ")+") would replace the plan's seccomp profile, labels or no-new-privileges")
	}
	if len(c.Mounts) > 0 && string(c.Mounts) != "null" {
		refuse("mounts", "mounts host paths or volumes past the policy; list host directories under spec.mounts, where each is checked against the protected paths")
	}
	if c.WorkspaceMount != "" {
		refuse("workspaceMount", "the workspace is the session's own copy of the repository, mounted by sourceosctl")
	}
	if len(c.Features) > 0 {
		refuse("features", "each feature ("+strings.Join(slices.Sorted(maps.Keys(c.Features)), ", ")+") is fetched from a container registry and runs its install script as root in the image; install what it provides in the Dockerfile instead")
	}
	if len(c.AppPort) > 0 {
		refuse("appPort", "publishes ports on the host's interfaces; serve publishes on 127.0.0.1 only")
	}

	// What does not apply to a governed session.
	for _, ig := range []struct {
		set          bool
		field, their string
	}{
		{c.RemoteUser != "", "remoteUser", "a session runs as your uid, never root or an image's user"},
		{c.ContainerUser != "", "containerUser", "a session runs as your uid, never root or an image's user"},
		{c.UpdateRemoteUserUID != nil, "updateRemoteUserUID", "a session runs as your uid already"},
		{c.UserEnvProbe != "", "userEnvProbe", "the environment is the image's and the profile's, not a login shell's"},
		{c.OverrideCommand != nil, "overrideCommand", "sourceosctl runs the tool (or, for a workspace, an idle process) itself"},
		{c.ShutdownAction != "", "shutdownAction", "sessions end with their tool; workspaces with down"},
		{c.Init != nil, "init", "every container has an init as PID 1"},
		{c.Privileged != nil && !*c.Privileged, "privileged", "false, as always"},
		{len(c.OverrideFeatureInstallOrder) > 0, "overrideFeatureInstallOrder", "features are not imported"},
		{len(c.Customizations) > 0, "customizations", "editor settings stay with the editor (ssh-config, up --ide)"},
		{len(c.PortsAttributes) > 0, "portsAttributes", "serve says how a port is served"},
		{len(c.OtherPortsAttributes) > 0, "otherPortsAttributes", "serve says how a port is served"},
		{len(c.PostAttachCommand) > 0, "postAttachCommand", "a join runs only what it is asked to"},
		{c.WaitFor != "", "waitFor", "up returns once the post-create and post-start commands ran"},
		{len(c.HostRequirements) > 0, "hostRequirements", "the profile's spec.resources are the limits"},
		{c.Name != "", "name", "the profile's name is the repository's (init --name)"},
	} {
		if ig.set {
			ignore(ig.field, ig.their)
		}
	}
	return x, nil
}

// jsonKind names a Go type as JSON calls it, for messages.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}

// hujsonWhere is where hujson's errors say the problem is.
var hujsonWhere = regexp.MustCompile(`^line (\d+), column \d+: (.*)$`)

// inside reports whether p is within root, symbolic links resolved (a missing path as written).
func inside(root, p string) bool {
	resolve := func(p string) string {
		abs, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			return r
		}
		return filepath.Clean(abs)
	}
	rel, err := filepath.Rel(resolve(root), resolve(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// localEnv matches a reference to the host's environment (${localEnv:NAME}).
var localEnv = regexp.MustCompile(`\$\{localEnv:[^}]*\}`)

func reserved(name string) bool {
	switch name {
	case "HOME", "TERM", "PATH", "container", "HOSTNAME":
		return true
	}
	return strings.HasPrefix(name, "SOURCEOS_") || strings.HasSuffix(strings.ToUpper(name), "_PROXY")
}

// commands reads a lifecycle command in the specification's three forms: a string (run by a
// shell), an array (run without one), an object of named commands of either form.
func commands(field string, raw json.RawMessage) ([]profile.Command, error) {
	one := func(where string, raw json.RawMessage) (profile.Command, error) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if strings.TrimSpace(s) == "" {
				return profile.Command{}, fmt.Errorf("%s: an empty command", where)
			}
			return profile.Command{Command: []string{"/bin/sh", "-c", s}}, nil
		}
		var argv []string
		if json.Unmarshal(raw, &argv) == nil && len(argv) > 0 && argv[0] != "" {
			return profile.Command{Command: argv}, nil
		}
		return profile.Command{}, fmt.Errorf("%s: must be a string, an array of strings or an object of them, not %s", where, raw)
	}
	var named map[string]json.RawMessage
	if json.Unmarshal(raw, &named) == nil && named != nil {
		var out []profile.Command
		for _, k := range slices.Sorted(maps.Keys(named)) {
			c, err := one(field+"."+k, named[k])
			if err != nil {
				return nil, err
			}
			c.Name = lifecycleName(field) + "-" + k
			out = append(out, c)
		}
		return out, nil
	}
	c, err := one(field, raw)
	c.Name = lifecycleName(field)
	return []profile.Command{c}, err
}

// lifecycleName is the command's name in the profile: the property without "Command".
func lifecycleName(field string) string {
	name, _, _ := strings.Cut(field, ".")
	return strings.TrimSuffix(name, "Command")
}

// duplicateKey finds a property given twice in one object (encoding/json keeps the last).
func duplicateKey(std []byte) string {
	dec := json.NewDecoder(bytes.NewReader(std))
	var dup string
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return false
				}
				key, _ := k.(string)
				if seen[key] && dup == "" {
					dup = key
				}
				seen[key] = true
				if !walk() {
					return false
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if !walk() {
					return false
				}
			}
			_, _ = dec.Token()
		}
		return true
	}
	walk()
	return dup
}

// keyLine is the line where "key": first appears, 0 when not found.
func keyLine(std []byte, key string) int {
	quoted, _ := json.Marshal(key)
	re := regexp.MustCompile(regexp.QuoteMeta(string(quoted)) + `\s*:`)
	if loc := re.FindIndex(std); loc != nil {
		return lineAt(std, loc[0])
	}
	return 0
}

func lineAt(data []byte, offset int) int {
	if offset > len(data) {
		offset = len(data)
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
