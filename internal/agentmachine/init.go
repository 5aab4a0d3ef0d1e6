package agentmachine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/devcontainer"
	"github.com/sourceos/sourceosctl/internal/image"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/project"
	"github.com/sourceos/sourceosctl/profiles"
)

// InitRequest asks for an example or a profile file to be rendered for one repository.
type InitRequest struct {
	Source string // example name or profile path; "" means this OS's example
	Repo   string // as typed: ~, relative or absolute
	Name   string // metadata.name; "" derives it from the repository's directory name
	Out    string // destination; "" means Dirs.ProfilesDir()/<name>.yaml
	Force  bool
	DryRun bool
	// Stack picks the image: "" detects the repository's stack (project.DetectStack), "none"
	// keeps the default image, else a catalog stack (go, go@1.19).
	Stack string
	// Devcontainer is a devcontainer.json (or a directory holding .devcontainer/) to take
	// the image, environment, workspace folder, ports and lifecycle commands from.
	Devcontainer string

	GOOS    string
	Home    string
	WorkDir string
	Dirs    Dirs
}

// InitResult is what init produced.
type InitResult struct {
	Path     string   `json:"path"`
	Name     string   `json:"name"`
	Written  bool     `json:"written"`
	Warnings []string `json:"warnings,omitempty"`
	// Stack is the stack the profile's image has ("" for none); Image the image it names, and
	// Build the command that builds it.
	Stack string `json:"stack,omitempty"`
	Image string `json:"image"`
	Build string `json:"build,omitempty"`
	YAML  []byte `json:"-"`
	// Devcontainer is what was taken from, refused in and left out of a devcontainer.json.
	Devcontainer *devcontainer.Import `json:"devcontainer,omitempty"`
}

// exampleFor is the example `init` renders when no --profile is given.
var exampleFor = map[string]string{"linux": "linux-rootless", "darwin": "macos-podman", "windows": "windows-wsl"}

// Init renders a profile for req.Repo and, unless DryRun, writes it atomically (mode 0600),
// refusing to replace an existing file without Force.
func Init(req InitRequest) (*InitResult, error) {
	srcName, data, err := initSource(req)
	if err != nil {
		return nil, err
	}
	doc, src, err := profile.ParseDocument(srcName, data)
	if err != nil {
		return nil, err
	}
	dcPath, err := findDevcontainer(req)
	if err != nil {
		return nil, err
	}
	if req.Repo == "" && dcPath != "" {
		req.Repo = devcontainerRepo(dcPath)
	}
	repo, err := checkRepo(req.Repo, req.Home, req.WorkDir)
	if err != nil {
		return nil, err
	}
	res := &InitResult{Name: req.Name}
	if res.Name == "" {
		res.Name = nameFromDir(repo)
	} else if !validName.MatchString(res.Name) {
		return nil, &InputError{Flag: "--name", Err: fmt.Errorf("%q must be 1-63 lowercase letters, digits or '-'", req.Name)}
	}
	if src.Spec.Host.OS != req.GOOS {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s is written for %s; this host is %s", srcName, src.Spec.Host.OS, req.GOOS))
	}
	doc.SetString(res.Name, "metadata", "name")
	doc.SetString(repo, "spec", "workspace", "repo")
	res.Image = src.Spec.Image.Ref
	if dcPath != "" {
		if err := fromDevcontainer(dcPath, repo, doc, res); err != nil {
			return nil, err
		}
	} else if err := pickStack(req.Stack, repo, src, doc, res); err != nil {
		return nil, err
	}
	doc.FilterList(func(i int) bool {
		m := src.Spec.Mounts[i]
		path, err := profile.ResolvePath(m.Source, req.Home, req.WorkDir)
		if err == nil {
			if _, err = os.Stat(path); err == nil {
				return true
			}
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("left out mount %s -> %s: %s does not exist here", m.Source, m.Target, m.Source))
		return false
	}, "spec", "mounts")
	if res.YAML, err = doc.Bytes(); err != nil {
		if dcPath != "" {
			return nil, fmt.Errorf("%s: what it gives does not make a valid profile: %w", dcPath, err)
		}
		return nil, err
	}

	res.Path = req.Out
	if res.Path == "" {
		res.Path = filepath.Join(req.Dirs.ProfilesDir(), res.Name+".yaml")
	} else if res.Path, err = profile.ResolvePath(res.Path, req.Home, req.WorkDir); err != nil {
		return nil, &InputError{Flag: "--out", Err: err}
	}
	if req.DryRun {
		return res, nil
	}
	err = atomicfile.Write(res.Path, res.YAML, 0o600, atomicfile.Options{NoClobber: !req.Force})
	if errors.Is(err, atomicfile.ErrExists) {
		return nil, &InputError{Err: fmt.Errorf("%s already exists; nothing was written", res.Path),
			Fix: "add --force to replace it, or choose another path with --out"}
	}
	if err != nil {
		return nil, err
	}
	res.Written = true
	return res, nil
}

// pickStack sets the profile's image to the stack image of the repository (detected, or as
// --stack says). A profile naming an image other than the default keeps it unless --stack is
// given.
func pickStack(want, repo string, src *profile.Profile, doc *profile.Document, res *InitResult) error {
	spec := want
	if want == "" {
		st, err := project.DetectStack(repo)
		if err != nil {
			return fmt.Errorf("detecting the repository's stack: %w", err)
		}
		if st.ID == "" {
			return nil
		}
		if src.Spec.Image.Ref != image.DefaultRef {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the repository looks like a %s project; kept the profile's image %s (give --stack %s to use the stack image instead)", st.ID, src.Spec.Image.Ref, st.ID))
			return nil
		}
		if w := st.Warning(); w != "" {
			res.Warnings = append(res.Warnings, w)
		}
		spec = st.ID
	}
	if spec == "none" {
		spec = ""
	}
	var specs []string
	if spec != "" {
		specs = []string{spec}
	}
	sel, err := image.DefaultCatalog().Resolve(specs)
	if err != nil {
		var in *image.InputError
		if errors.As(err, &in) {
			return &InputError{Flag: "--stack", Err: errors.New(in.Msg), Fix: in.Fix + ", or none for the default image"}
		}
		return err
	}
	ref := image.StackRef(sel)
	if ref != src.Spec.Image.Ref && src.Spec.Image.Ref != image.DefaultRef {
		res.Warnings = append(res.Warnings, fmt.Sprintf("--stack replaces the profile's image %s with %s", src.Spec.Image.Ref, ref))
	}
	if len(sel) > 0 {
		res.Stack = sel[0].Stack
	}
	res.Image = ref
	res.Build, _ = BuildCommand(ref)
	doc.SetString(ref, "spec", "image", "ref")
	if src.Spec.Image.Digest != "" && ref != src.Spec.Image.Ref {
		doc.Remove("spec", "image", "digest") // the pin was the other image's
	}
	return nil
}

// findDevcontainer resolves --from-devcontainer: a file, or a directory holding
// .devcontainer/devcontainer.json or .devcontainer.json ("" when not asked for).
func findDevcontainer(req InitRequest) (string, error) {
	if req.Devcontainer == "" {
		return "", nil
	}
	p, err := profile.ResolvePath(req.Devcontainer, req.Home, req.WorkDir)
	if err != nil {
		return "", &InputError{Flag: "--from-devcontainer", Err: err}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", &InputError{Flag: "--from-devcontainer", Err: err, Fix: "give a devcontainer.json, or the repository holding .devcontainer/devcontainer.json"}
	}
	if !fi.IsDir() {
		return p, nil
	}
	for _, name := range []string{filepath.Join(".devcontainer", "devcontainer.json"), ".devcontainer.json"} {
		if _, err := os.Stat(filepath.Join(p, name)); err == nil {
			return filepath.Join(p, name), nil
		}
	}
	return "", &InputError{Flag: "--from-devcontainer", Err: fmt.Errorf("%s holds neither .devcontainer/devcontainer.json nor .devcontainer.json", p)}
}

// devcontainerRepo is the repository a devcontainer.json belongs to: the directory holding
// .devcontainer/ (or .devcontainer.json).
func devcontainerRepo(path string) string {
	dir := filepath.Dir(path)
	if filepath.Base(dir) == ".devcontainer" {
		return filepath.Dir(dir)
	}
	return dir
}

// fromDevcontainer renders what a devcontainer.json gives into the profile. What it refuses
// never reaches the document, and the document is checked by the profile loader as any is.
func fromDevcontainer(path, repo string, doc *profile.Document, res *InitResult) error {
	imp, err := devcontainer.Read(path, repo, res.Name)
	if err != nil {
		return err
	}
	res.Devcontainer, res.Image = imp, imp.Image
	doc.SetString(imp.Image, "spec", "image", "ref")
	doc.Remove("spec", "image", "digest")
	doc.Remove("spec", "image", "sources")
	if imp.Dockerfile != "" {
		res.Build = ShellQuote([]string{"sourceosctl", "agent-machine", "image", "build", "--dockerfile", imp.Dockerfile, "--context", imp.Context, "--tag", imp.Image})
		for _, k := range sortedKeys(imp.BuildArgs) {
			res.Build += " " + ShellQuote([]string{"--build-arg", k + "=" + imp.BuildArgs[k]})
		}
	}
	if imp.MountPath != "" {
		doc.SetString(imp.MountPath, "spec", "workspace", "mountPath")
	}
	set := func(v any, ok bool, path ...string) error {
		if !ok {
			return nil
		}
		return doc.SetValue(v, path...)
	}
	return errors.Join(set(imp.Env, len(imp.Env) > 0, "spec", "env"), set(imp.Ports, len(imp.Ports) > 0, "spec", "workspace", "ports"),
		set(imp.PostCreate, len(imp.PostCreate) > 0, "spec", "workspace", "postCreate"),
		set(imp.PostStart, len(imp.PostStart) > 0, "spec", "workspace", "postStart"))
}

// initSource finds the profile to render: an existing file wins over an example name.
func initSource(req InitRequest) (string, []byte, error) {
	src := req.Source
	if src == "" {
		src = exampleFor[req.GOOS]
		if src == "" {
			src = "linux-rootless"
		}
	}
	looksLikePath := strings.ContainsAny(src, `/\`) || strings.HasSuffix(src, ".yaml") || strings.HasSuffix(src, ".yml")
	if _, err := os.Stat(src); err == nil || looksLikePath {
		path, err := profile.ResolvePath(src, req.Home, req.WorkDir)
		if err != nil {
			return "", nil, &InputError{Flag: "--profile", Err: err}
		}
		data, err := profile.ReadFile(path)
		return src, data, err
	}
	if data, ok := profiles.Example(src); ok {
		return "example " + src, data, nil
	}
	return "", nil, &InputError{Flag: "--profile", Err: fmt.Errorf("%q is neither a file nor an example; examples: %s", src, strings.Join(profiles.ExampleNames(), ", "))}
}

// checkRepo resolves the repository path and makes sure it is a readable directory.
func checkRepo(repo, home, workDir string) (string, error) {
	if repo == "" {
		return "", &InputError{Flag: "--repo", Err: errors.New("is required: give the repository the profile is for"), Fix: "sourceosctl agent-machine init --repo ~/dev/app"}
	}
	path, err := profile.ResolvePath(repo, home, workDir)
	if err != nil {
		return "", &InputError{Flag: "--repo", Err: err}
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", &InputError{Flag: "--repo", Err: fmt.Errorf("%s does not exist", path)}
	case err != nil:
		return "", &InputError{Flag: "--repo", Err: err}
	case !st.IsDir():
		return "", &InputError{Flag: "--repo", Err: fmt.Errorf("%s is not a directory", path)}
	}
	d, err := os.Open(path)
	if err == nil {
		_, err = d.Readdirnames(1)
		d.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return "", &InputError{Flag: "--repo", Err: fmt.Errorf("%s is not readable: %v", path, err)}
	}
	return path, nil
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// nameFromDir turns a directory name into a valid profile name ("My_App" → "my-app").
func nameFromDir(dir string) string {
	base := strings.ToLower(filepath.Base(dir))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 63 {
		name = strings.Trim(name[:63], "-")
	}
	if name == "" {
		name = "workspace"
	}
	return name
}
