// Package schemas embeds the JSON Schemas that define sourceosctl's documents, so that the
// binary validates against exactly the schemas it ships with.
package schemas

import "embed"

// FS holds every *.schema.json file in this directory.
//
//go:embed *.schema.json
var FS embed.FS

// ProfileFile is the AgentMachineProfile schema's file name within FS.
const ProfileFile = "agent-machine-profile.schema.json"

// TestFile is the test.yaml schema's file name within FS (sourceosctl agent-machine test).
const TestFile = "agent-machine-test.schema.json"
