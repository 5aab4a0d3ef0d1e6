package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/schemas"
)

// Predicate is what a session bundle asserts. Times are self-asserted by the host that ran
// the session: nothing external vouches for them.
type Predicate struct {
	SchemaVersion   string      `json:"schemaVersion"`
	Session         Session     `json:"session"`
	Profile         ProfileRef  `json:"profile"`
	PolicyHash      string      `json:"policyHash"`
	Repo            Repo        `json:"repo"`
	Image           Image       `json:"image"`
	Tool            Tool        `json:"tool"`
	Command         []string    `json:"command"`
	User            string      `json:"user"`
	Mounts          []Mount     `json:"mounts"`
	Network         string      `json:"network"`
	Egress          *Egress     `json:"egress,omitempty"`
	Capabilities    Caps        `json:"capabilities"`
	SecurityOptions []string    `json:"securityOptions"`
	Checks          *Checks     `json:"checks,omitempty"`
	Limits          Limits      `json:"limits"`
	Secrets         []string    `json:"secrets"`
	Host            Host        `json:"host"`
	Git             Git         `json:"git"`
	Environment     Environment `json:"environment"`
}

// Egress is the egress gateway's account of a session: the policy it applied and, per
// destination, how many connection attempts it allowed, denied or could not complete, and the
// bytes moved. Every attempt is in the artifact named by Log.
type Egress struct {
	Allow    []EgressRule `json:"allow"`
	Deny     []EgressRule `json:"deny"`
	Log      string       `json:"log"` // the artifact holding every attempt, one JSON object per line
	Attempts int          `json:"attempts"`
	Allowed  int          `json:"allowed"`
	Denied   int          `json:"denied"`
	Failed   int          `json:"failed"`
	// Itemized attempts are in the log (the first ones, up to the gateway's limit); all are
	// counted.
	Itemized int `json:"itemized"`
	// Destinations sums the attempts per host and port, in order of first attempt, up to the
	// gateway's limit; OtherDestinations sums the rest.
	Destinations      []EgressDestination `json:"destinations"`
	OtherDestinations *EgressDestination  `json:"otherDestinations,omitempty"`
	// Connections made to the gateway, and requests its HTTP parser refused before any
	// destination was named (they reached nothing).
	Connections int64 `json:"connections"`
	Unparsed    int64 `json:"unparsed"`
	// Unaccounted is set when the gateway could not account for every connection (it was
	// stopped with connections still open); the session then failed.
	Unaccounted string `json:"unaccounted,omitempty"`
	// Injected are the secrets the gateway put into requests (by name, never the value).
	Injected []EgressInjection `json:"injected,omitempty"`
}

// EgressInjection is one injected secret: the hosts it was declared for, and the requests it
// was put into, in all and per host.
type EgressInjection struct {
	Name     string         `json:"name"`
	Hosts    []string       `json:"hosts"`
	Requests int            `json:"requests"`
	PerHost  []InjectedHost `json:"perHost"`
}

// InjectedHost counts one secret's injections into requests to one host and port.
type InjectedHost struct {
	Host  string `json:"host"`
	Count int    `json:"count"`
}

// EgressRule is one rule of the policy and where it comes from.
type EgressRule struct {
	Rule   string `json:"rule"`
	Source string `json:"source"`
}

// EgressDestination is one host and port's attempts.
type EgressDestination struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Allowed  int    `json:"allowed"`
	Denied   int    `json:"denied"`
	Failed   int    `json:"failed"`
	BytesOut int64  `json:"bytesOut"`
	BytesIn  int64  `json:"bytesIn"`
}

type Session struct {
	ID          string `json:"id"`
	Outcome     string `json:"outcome"` // succeeded, tool-failed, failed, interrupted
	ExitCode    *int   `json:"exitCode"`
	Ran         bool   `json:"ran"`
	Interrupted bool   `json:"interrupted"`
	Cause       string `json:"cause,omitempty"`
	Error       string `json:"error,omitempty"`
	StartedOn   string `json:"startedOn"`
	FinishedOn  string `json:"finishedOn"`
	// TimesSelfAsserted is always true: the times come from this host's clock.
	TimesSelfAsserted bool   `json:"timesSelfAsserted"`
	Container         string `json:"container"`
	ContainerID       string `json:"containerId,omitempty"`
	// Workspace is set when the record is a long-lived workspace's.
	Workspace *WorkspaceAction `json:"workspace,omitempty"`
	// Project is set when the session ran a project's tests or dev server (test, serve).
	Project *Project `json:"project,omitempty"`
}

// Project is what a test or serve session ran, and where that came from.
type Project struct {
	Action string `json:"action"` // test, serve
	// Source is the file the command came from (.sourceos/test.yaml, package.json (scripts.test),
	// go.mod …), "the command line" for -- COMMAND, or "" for serve's fallback.
	Source string        `json:"source"`
	Steps  []ProjectStep `json:"steps"`
	// Env names the variables the test file set for every step (their values are the file's).
	Env []string `json:"env,omitempty"`
	// Dir is the directory it ran in, relative to the repository; Port where a server listened.
	Dir  string `json:"dir,omitempty"`
	Port int    `json:"port,omitempty"`
}

// ProjectStep is one command line of a project's.
type ProjectStep struct {
	Name string `json:"name"`
	Run  string `json:"run"`
}

// WorkspaceAction names the workspace a record belongs to and what it records: its up, a
// command that joined it, or its down; Up is the session id of the up that made its container.
type WorkspaceAction struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	Up     string `json:"up"`
}

// Checks says how the container was checked before the tool started: the server's inspect
// compared with the plan, then the helper from inside the container.
type Checks struct {
	Inspect            string   `json:"inspect"` // as-planned, differs, not-reached
	InspectDifferences []string `json:"inspectDifferences,omitempty"`
	Inside             string   `json:"inside"` // passed, refused, no-helper, not-reached
	InsideDifferences  []string `json:"insideDifferences,omitempty"`
	Helper             string   `json:"helper,omitempty"` // the helper's digest
	// Drift is the container inspected again at the end (none, differs, not-checked), and
	// DriftDifferences how it differed from the plan then, or why it was not checked.
	Drift            string   `json:"drift,omitempty"`
	DriftDifferences []string `json:"driftDifferences,omitempty"`
}

type ProfileRef struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
}

type Repo struct {
	Path      string `json:"path"`
	MountPath string `json:"mountPath"`
}

type Image struct {
	Ref          string `json:"ref"`
	ID           string `json:"id,omitempty"`
	Digest       string `json:"digest,omitempty"`
	PinnedDigest string `json:"pinnedDigest,omitempty"`
}

type Tool struct {
	Name          string `json:"name"`
	Binary        string `json:"binary"`
	Version       string `json:"version,omitempty"`
	BinaryDigest  string `json:"binaryDigest,omitempty"`
	VersionAbsent string `json:"versionAbsent,omitempty"`
}

type Mount struct {
	Source   string   `json:"source"`
	Target   string   `json:"target"`
	ReadOnly bool     `json:"readOnly"`
	Options  []string `json:"options"`
}

type Caps struct {
	Drop []string `json:"drop"`
	Add  []string `json:"add"`
}

type Limits struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memoryBytes"`
	Pids        int64   `json:"pids"`
	Enforced    bool    `json:"enforced"`
}

type Host struct {
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	Sourceosctl   string `json:"sourceosctl"`
	Kernel        string `json:"kernel,omitempty"`
	PodmanClient  string `json:"podmanClient,omitempty"`
	PodmanServer  string `json:"podmanServer,omitempty"`
	Rootless      bool   `json:"rootless"`
	Connection    string `json:"connection"`
	GitVersion    string `json:"git,omitempty"`
	ServerOS      string `json:"serverOS,omitempty"`
	CgroupVersion string `json:"cgroupVersion,omitempty"`
}

type Git struct {
	Before fingerprint.GitState `json:"before"`
	After  fingerprint.GitState `json:"after"`
	// Workspace says how the session saw the repository (absent in bundles written before
	// sessions had copies).
	Workspace *Workspace `json:"workspace,omitempty"`
}

// Workspace is the session's view of the repository: in copy mode its branch, where it
// started and what came back.
type Workspace struct {
	Mode     string        `json:"mode"`
	Branch   string        `json:"branch,omitempty"`
	Head     string        `json:"head,omitempty"`
	Snapshot string        `json:"snapshot,omitempty"`
	Base     string        `json:"base,omitempty"`
	Result   *BranchResult `json:"result,omitempty"`
	Masked   []string      `json:"masked,omitempty"`
	Included []string      `json:"included,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// BranchResult is the session's branch as it arrived in the user's repository.
type BranchResult struct {
	Changed  bool     `json:"changed"`
	Head     string   `json:"head,omitempty"`
	Commits  []string `json:"commits,omitempty"`
	Leftover string   `json:"leftover,omitempty"`
	Stat     string   `json:"stat,omitempty"`
}

// Environment records the host's environment variable names; values are masked unless
// the name is on the short list in MaskingRule.
type Environment struct {
	Variables   map[string]string `json:"variables"`
	MaskingRule string            `json:"maskingRule"`
}

// unmasked are the variables whose values are recorded: they locate and describe the
// session and carry no credentials.
var unmasked = map[string]bool{"LANG": true, "LC_ALL": true, "TERM": true, "SHELL": true, "TZ": true, "XDG_SESSION_TYPE": true}

// MaskingRule is recorded in every bundle.
const MaskingRule = "every value is replaced by *** except LANG, LC_ALL, TERM, SHELL, TZ and XDG_SESSION_TYPE"

// MaskEnvironment applies MaskingRule to environ (NAME=value entries).
func MaskEnvironment(environ []string) Environment {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if name == "" {
			continue
		}
		if !unmasked[name] {
			value = "***"
		}
		vars[name] = value
	}
	return Environment{Variables: vars, MaskingRule: MaskingRule}
}

var predicateSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	const file = "agent-machine-evidence.schema.json"
	raw, err := schemas.FS.ReadFile(file)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(file, doc); err != nil {
		return nil, err
	}
	return c.Compile(file)
})

// PrepareSchema compiles the predicate's schema now (it is compiled once per process), so
// that a session can do it while its tool runs rather than while the user waits for the
// record.
func PrepareSchema() { _, _ = predicateSchema() }

// ValidatePredicate checks a predicate against schemas/agent-machine-evidence.schema.json.
func ValidatePredicate(p *Predicate) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return validatePredicateJSON(raw)
}

func validatePredicateJSON(raw []byte) error {
	s, err := predicateSchema()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	err = s.Validate(v)
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		var msgs []string
		collectLeaves(ve, &msgs)
		sort.Strings(msgs)
		return errors.New(strings.Join(msgs, "; "))
	}
	return err
}

func collectLeaves(e *jsonschema.ValidationError, out *[]string) {
	if len(e.Causes) == 0 {
		*out = append(*out, fmt.Sprintf("/%s: %s", strings.Join(e.InstanceLocation, "/"), e.ErrorKind.LocalizedString(message.NewPrinter(language.English))))
		return
	}
	for _, c := range e.Causes {
		collectLeaves(c, out)
	}
}
