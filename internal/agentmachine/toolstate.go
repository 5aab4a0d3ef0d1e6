package agentmachine

import (
	"context"
	"fmt"
	"sort"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// RoleToolState labels the volumes that keep a tool's state.
const RoleToolState = "tool-state"

// ToolStatePlan is the volume that keeps a built-in tool's configuration directory — its
// login, settings and history — across the sessions of one profile.
type ToolStatePlan struct {
	Volume string `json:"volume"`
	Tool   string `json:"tool"`
	Target string `json:"target"`
	Env    string `json:"env"` // the tool's variable naming the directory
}

// StateVolume names the state volume of a profile's tool.
func StateVolume(profileName, toolName string) string {
	return "sosctl-state-" + profileName + "-" + toolName
}

// stateLabels label a state volume so that state list finds it and says whose it is.
func stateLabels(profileName, toolName string) map[string]string {
	return map[string]string{LabelManaged: "true", LabelRole: RoleToolState, LabelProfile: profileName, LabelTool: toolName}
}

// planToolState mounts the tool's state volume and points the tool at it, unless the profile
// says state: false (or the tool has no state directory to move).
func planToolState(p *profile.Profile, pl *Plan) {
	def, ok := tool.Builtin(pl.Tool.Name)
	if !ok || def.StateEnv == "" || !p.Spec.Tools.Entry(def.Name).KeepsState() {
		return
	}
	ts := &ToolStatePlan{Volume: StateVolume(p.Metadata.Name, def.Name), Tool: def.Name, Target: container.StateTarget, Env: def.StateEnv}
	pl.ToolState = ts
	s := &pl.Container
	s.Volumes = append(s.Volumes, container.Volume{Name: ts.Volume, Target: ts.Target, Chown: true})
	s.Env[ts.Env] = ts.Target
	pl.Notes = append(pl.Notes, fmt.Sprintf("tool state: %s keeps its login, settings and history in volume %s ($%s=%s) across this profile's sessions; a login kept there is readable by the tool and by anything it runs (injected secrets are not); remove it with: sourceosctl agent-machine state rm --tool %s",
		def.Name, ts.Volume, ts.Env, ts.Target, def.Name))
}

// ensureStateVolume creates the session's state volume, labelled, the first time.
func (r *sessionRun) ensureStateVolume(ctx context.Context) error {
	ts := r.plan.ToolState
	if ts == nil {
		return nil
	}
	exists, err := r.engine.VolumeExists(ctx, ts.Volume)
	if err != nil || exists {
		return err
	}
	if err := r.engine.CreateVolume(ctx, ts.Volume, stateLabels(r.plan.Profile.Name, ts.Tool)); err != nil {
		return err
	}
	r.event("created tool state volume %s", ts.Volume)
	return nil
}

// ToolState is one tool's kept state.
type ToolState struct {
	Volume  string `json:"volume"`
	Profile string `json:"profile"`
	Tool    string `json:"tool"`
	Created string `json:"created"`
}

// ListToolState lists the state volumes on the service, by profile and tool.
func ListToolState(ctx context.Context, e Engine) ([]ToolState, error) {
	vols, err := e.Volumes(ctx, LabelRole+"="+RoleToolState)
	if err != nil {
		return nil, err
	}
	out := []ToolState{}
	for _, v := range vols {
		if v.Labels[LabelManaged] != "true" {
			continue
		}
		created := ""
		if !v.Created.IsZero() {
			created = v.Created.UTC().Format("2006-01-02T15:04:05Z")
		}
		out = append(out, ToolState{Volume: v.Name, Profile: v.Labels[LabelProfile], Tool: v.Labels[LabelTool], Created: created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out, nil
}
