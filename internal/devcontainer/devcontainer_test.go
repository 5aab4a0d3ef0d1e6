package devcontainer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/profile"
)

func fields(fs []Field) map[string]string {
	out := map[string]string{}
	for _, f := range fs {
		out[f.Field] = f.Reason
	}
	return out
}

func TestAnImageBasedFileIsTaken(t *testing.T) {
	x, err := Read("testdata/image.jsonc", ".", "app")
	if err != nil {
		t.Fatal(err)
	}
	if x.Image != "mcr.microsoft.com/devcontainers/javascript-node:1-22-bookworm" || x.Dockerfile != "" || x.MountPath != "/workspaces/app" {
		t.Errorf("image %q dockerfile %q mount %q", x.Image, x.Dockerfile, x.MountPath)
	}
	if want := map[string]string{"NODE_ENV": "development", "APP_DIR": "/workspaces/app/app", "PATH_EXTRA": "/opt/bin"}; !reflect.DeepEqual(x.Env, want) {
		t.Errorf("env %v, want %v", x.Env, want)
	}
	if !reflect.DeepEqual(x.Ports, []int{3000, 9229}) {
		t.Errorf("ports %v", x.Ports)
	}
	wantCreate := []profile.Command{{Name: "postCreate", Command: []string{"/bin/sh", "-c", "npm ci"}}}
	wantStart := []profile.Command{{Name: "postStart", Command: []string{"npm", "run", "watch"}}}
	if !reflect.DeepEqual(x.PostCreate, wantCreate) || !reflect.DeepEqual(x.PostStart, wantStart) {
		t.Errorf("lifecycle %+v %+v", x.PostCreate, x.PostStart)
	}
	if len(x.Refused) != 0 {
		t.Errorf("refused: %v", x.Refused)
	}
	ignored := fields(x.Ignored)
	for _, f := range []string{"remoteUser", "customizations", "name"} {
		if ignored[f] == "" {
			t.Errorf("%s is not listed as left out: %v", f, ignored)
		}
	}
}

func TestADockerfileBasedFileIsBuiltAndItsObjectCommandsNamed(t *testing.T) {
	x, err := Read("testdata/dockerfile.jsonc", ".", "api")
	if err != nil {
		t.Fatal(err)
	}
	if x.Image != "localhost/sourceos/devcontainer-api:latest" || x.Dockerfile != filepath.Join("testdata", "Dockerfile") || x.Context != filepath.Join("testdata", "..") || x.BuildArgs["VARIANT"] != "1.22" {
		t.Errorf("build: %q %q %q %v", x.Image, x.Dockerfile, x.Context, x.BuildArgs)
	}
	want := []profile.Command{
		{Name: "onCreate-deps", Command: []string{"go", "mod", "download"}},
		{Name: "onCreate-tools", Command: []string{"/bin/sh", "-c", "go install golang.org/x/tools/gopls@latest"}},
		{Name: "updateContent", Command: []string{"/bin/sh", "-c", "go build ./..."}},
	}
	if !reflect.DeepEqual(x.PostCreate, want) {
		t.Errorf("post-create %+v\nwant %+v", x.PostCreate, want)
	}
	if len(x.PostStart) != 1 || x.PostStart[0].Name != "postStart-hello" || x.PostStart[0].Command[2] != "echo up in /workspace" {
		t.Errorf("post-start %+v", x.PostStart)
	}
	refused := fields(x.Refused)
	if len(x.BuildArgs) != 1 || refused["build.args.NPM_TOKEN"] == "" || refused["build.args.HOST_USER"] != "copies a variable of the host's environment into the build" {
		t.Errorf("build args %v, refused %v", x.BuildArgs, refused)
	}
}

func TestWhatWouldWidenTheBoundaryIsRefusedFieldByField(t *testing.T) {
	x, err := Read("testdata/widening.jsonc", ".", "w")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"initializeCommand":         "runs on the host, before the container exists; sourceosctl runs nothing of a repository's on the host",
		"runArgs":                   "passes podman run flags, which can add capabilities, devices, mounts or the host's namespaces; the profile alone says what a container gets",
		"privileged":                "a privileged container has every capability and the host's devices",
		"capAdd":                    "adds capabilities (SYS_PTRACE); a session's are all dropped",
		"securityOpt":               "security options (seccomp=unconfined) would replace the plan's seccomp profile, labels or no-new-privileges",
		"mounts":                    "mounts host paths or volumes past the policy; list host directories under spec.mounts, where each is checked against the protected paths",
		"workspaceMount":            "the workspace is the session's own copy of the repository, mounted by sourceosctl",
		"features":                  "each feature (ghcr.io/devcontainers/features/aws-cli:1, ghcr.io/devcontainers/features/docker-in-docker:2) is fetched from a container registry and runs its install script as root in the image; install what it provides in the Dockerfile instead",
		"appPort":                   "publishes ports on the host's interfaces; serve publishes on 127.0.0.1 only",
		"forwardPorts[0]":           `"db:5432" names another container's port (host:port); a session is one container`,
		"forwardPorts[1]":           "0 is not a port (1-65535)",
		"containerEnv.AWS_PROFILE":  "copies a variable of the host's environment into the container; a credential goes under spec.secrets, anything else as a plain value",
		"containerEnv.GITHUB_TOKEN": "looks like a credential, which a profile never holds as plain text; declare it under spec.secrets",
		"containerEnv.HOME":         "is set by sourceosctl itself",
		"containerEnv.HTTPS_PROXY":  "is set by sourceosctl itself",
	}
	if got := fields(x.Refused); !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: refused %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if want[k] == "" {
				t.Errorf("%s refused unexpectedly: %s", k, got[k])
			}
		}
	}
	if len(x.Env) != 0 || len(x.Ports) != 0 || len(x.PostCreate) != 0 || len(x.PostStart) != 0 {
		t.Errorf("a refused field reached the import: env %v ports %v lifecycle %v %v", x.Env, x.Ports, x.PostCreate, x.PostStart)
	}
	ignored := fields(x.Ignored)
	if ignored["postAttachCommand"] == "" || ignored["hostRequirements"] == "" {
		t.Errorf("left out: %v", ignored)
	}
}

func TestFilesThatCannotBeImported(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "devcontainer.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct{ name, body, want string }{
		{"compose", "", "is compose-based (dockerComposeFile, service): it describes several containers, and a governed session is one; point image or build.dockerfile at the service's image in a devcontainer.json of its own"},
		{"a misspelt property", "{\n  \"image\": \"x\",\n  \"postCreateCommnd\": \"npm ci\"\n}", `devcontainer.json:3: unknown property "postCreateCommnd"; check its spelling`},
		{"a repeated property", "{\n \"image\": \"x\",\n \"image\": \"y\"\n}", `devcontainer.json:2: property "image" is given twice; keep one`},
		{"a wrong type", "{\n \"image\": \"x\",\n \"forwardPorts\": 3000\n}", "devcontainer.json:3: forwardPorts: must be an array, not number"},
		{"not JSON", "{\n \"image\": \"x\"\n \"name\": \"y\"\n}", "devcontainer.json:3: not JSON with comments"},
		{"no image", "{\"name\": \"x\"}", "names no image (image, or build.dockerfile); add one"},
		{"both", `{"image": "x", "build": {"dockerfile": "Dockerfile"}}`, "sets both image and build.dockerfile; keep one"},
		{"a relative folder", "{\n \"image\": \"x\",\n \"workspaceFolder\": \"work\"\n}", `devcontainer.json:3: workspaceFolder "work" is not an absolute path in the container`},
		{"a bad lifecycle command", "{\n \"image\": \"x\",\n \"postCreateCommand\": 7\n}", "devcontainer.json:3: postCreateCommand: must be a string, an array of strings or an object of them, not 7"},
		{"a context outside the repository", "{\n \"build\": {\n  \"dockerfile\": \"Dockerfile\",\n  \"context\": \"../..\"\n }\n}", "devcontainer.json:4: build.context " + filepath.Dir(filepath.Dir(dir)) + " is outside the repository " + dir + "; keep the Dockerfile and its context inside the repository"},
		{"a Dockerfile outside the repository", "{\"build\": {\"dockerfile\": \"../../etc/hostname\"}}", "build.dockerfile " + filepath.Join(dir, "../../etc/hostname") + " is outside the repository"},
		{"an empty lifecycle command", `{"image": "x", "postStartCommand": {"a": "  "}}`, "postStartCommand.a: an empty command"},
	}
	for _, tt := range cases {
		path := "testdata/compose.jsonc"
		if tt.body != "" {
			path = write(tt.body)
		}
		_, err := Read(path, filepath.Dir(path), "n")
		var in *InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v\nwant an input error containing %q", tt.name, err, tt.want)
		}
	}
}
