package profile

import (
	"sync"

	"github.com/sourceos/sourceosctl/internal/yamlschema"
	"github.com/sourceos/sourceosctl/schemas"
)

// LoadError reports every problem found in one profile. It is the only error Load and Parse
// return, so callers can map it to the usage exit code with errors.As.
type LoadError = yamlschema.Error

// Problem is one thing wrong with a profile, located by file, line and field.
type Problem = yamlschema.Problem

var profileKind = yamlschema.Kind{
	Name:    "profile",
	Empty:   "start from an example: sourceosctl agent-machine init --profile linux-rootless --repo PATH",
	Missing: "create one with: sourceosctl agent-machine init --profile linux-rootless --repo PATH",
}

// profileSchema is the embedded schema, compiled once: a memo of a pure function of embedded
// bytes, not mutable state.
var profileSchema = sync.OnceValues(func() (*yamlschema.Schema, error) {
	raw, err := schemas.FS.ReadFile(schemas.ProfileFile)
	if err != nil {
		return nil, err
	}
	return yamlschema.Compile("https://sourceos.dev/schemas/agent-machine-profile.schema.json", raw)
})
