package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// StatusSchemaVersion identifies status's JSON output.
const StatusSchemaVersion = "sourceos.dev/agent-machine-status/v1"

// StatusReport is what status prints.
type StatusReport struct {
	SchemaVersion string         `json:"schemaVersion"`
	Machine       *StatusMachine `json:"machine,omitempty"`
	Connection    StatusAPI      `json:"connection"`
	Sessions      []StatusEntry  `json:"sessions"`
	// Workspaces are the workspaces made by up, running or down.
	Workspaces []StatusWorkspace `json:"workspaces,omitempty"`
	Image      StatusImage       `json:"image"`
}

// StatusWorkspace is one workspace: its container's state and, when running, what it uses.
// It publishes no port (editors reach it over SSH through sourceosctl): Ports is empty.
type StatusWorkspace struct {
	Name      string           `json:"name"`
	State     string           `json:"state"` // running, down (by down), stopped or gone (outside sourceosctl), unknown
	Repo      string           `json:"repo"`
	Profile   string           `json:"profile"`
	Branch    string           `json:"branch"`
	Container string           `json:"container,omitempty"`
	Gateway   string           `json:"gateway,omitempty"` // the gateway sidecar's state
	Started   *time.Time       `json:"started,omitempty"`
	Uptime    string           `json:"uptime,omitempty"`
	Usage     *container.Usage `json:"usage,omitempty"`
	Ports     []string         `json:"ports,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// StatusMachine is the profile's Podman machine, when it uses one.
type StatusMachine struct {
	Name      string `json:"name"`
	Provider  string `json:"provider,omitempty"`
	State     string `json:"state,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	Uptime    string `json:"uptime,omitempty"`
	Error     string `json:"error,omitempty"`
}

// StatusAPI is the Podman service status found.
type StatusAPI struct {
	URI       string `json:"uri"`
	Source    string `json:"source"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Server    string `json:"serverVersion,omitempty"`
	Rootless  bool   `json:"rootless"`
}

// StatusEntry is one running session.
type StatusEntry struct {
	Name    string `json:"name"`
	Session string `json:"session"`
	Tool    string `json:"tool"`
	Repo    string `json:"repo"`
	Profile string `json:"profile"`
	// State is running, or another state for a container a session that was killed left
	// behind (stop removes it).
	State   string    `json:"state,omitempty"`
	Started time.Time `json:"started"`
	Uptime  string    `json:"uptime"`
}

// StatusImage is the profile's image in local storage.
type StatusImage struct {
	Ref     string `json:"ref"`
	Present bool   `json:"present"`
	ID      string `json:"id,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// StatusDeps are what status reads.
type StatusDeps struct {
	Connect Connector
	// Dirs holds the workspaces' records ("" State: none are listed).
	Dirs     Dirs
	Machines MachineOps // nil when the profile uses no machine
	Now      func() time.Time
}

// Status reports the profile's machine, the Podman service, the running sessions and the
// image. The report is complete as far as it goes; the error says why the service could not
// be asked (status then exits non-zero).
func Status(ctx context.Context, d StatusDeps, p *profile.Profile) (StatusReport, error) {
	r := StatusReport{SchemaVersion: StatusSchemaVersion, Sessions: []StatusEntry{}, Image: StatusImage{Ref: p.Spec.Image.Ref}}
	if ref := MachineOf(p); ref.Name != "" && d.Machines != nil {
		r.Machine = machineStatus(ctx, d, ref)
	}
	engine, conn, err := d.Connect(ctx, MachineOf(p))
	r.Connection = StatusAPI{URI: conn.URI, Source: conn.Source}
	if err == nil {
		err = fillStatus(ctx, d.Now(), engine, &r)
	}
	if err != nil {
		r.Connection.Error = err.Error()
	}
	r.Workspaces = workspaceStatus(ctx, d, engine, err == nil)
	return r, err
}

// workspaceStatus lists the workspaces; with the service reachable, their containers' state
// and what the running ones use.
func workspaceStatus(ctx context.Context, d StatusDeps, engine Engine, reachable bool) []StatusWorkspace {
	if d.Dirs.State == "" {
		return nil
	}
	ws, skipped, err := d.Dirs.Workspaces()
	var out []StatusWorkspace
	for _, s := range skipped {
		file, why, _ := strings.Cut(s, ": ")
		out = append(out, StatusWorkspace{Name: strings.TrimSuffix(file, ".json"), State: "unknown", Error: "its record is unreadable: " + why})
	}
	if err != nil {
		return append(out, StatusWorkspace{Name: d.Dirs.WorkspacesDir(), State: "unknown", Error: err.Error()})
	}
	for _, w := range ws {
		sw := StatusWorkspace{Name: w.Name, Repo: w.Repo, Profile: w.Profile, Branch: "", State: "down"}
		if w.Plan != nil && w.Plan.Workspace.Copy != nil {
			sw.Branch = w.Plan.Workspace.Copy.Branch
		}
		if w.Running() {
			sw.Container, sw.State = short(w.ContainerID), "unknown"
		}
		if !reachable || !w.Running() {
			out = append(out, sw)
			continue
		}
		list, err := engine.Containers(ctx, LabelWorkspace+"="+w.Name, true)
		if err != nil {
			sw.Error = err.Error()
			out = append(out, sw)
			continue
		}
		sw.State = "gone"
		for _, c := range list {
			switch c.ID {
			case w.ContainerID:
				sw.State = c.State
				if c.State == "running" {
					started := c.Started.UTC()
					sw.Started, sw.Uptime = &started, d.Now().Sub(c.Started).Round(time.Second).String()
				} else {
					sw.State = "stopped"
				}
			case w.SidecarID:
				sw.Gateway = c.State
			}
		}
		if sw.State == "running" {
			if u, err := engine.Usage(ctx, w.ContainerID); err == nil {
				sw.Usage = &u
			} else {
				sw.Error = err.Error()
			}
		}
		out = append(out, sw)
	}
	return out
}

func machineStatus(ctx context.Context, d StatusDeps, ref machine.Ref) *StatusMachine {
	name := ref.Name
	m, found, err := d.Machines.Get(ctx, name, ref.Provider)
	switch {
	case err != nil:
		return &StatusMachine{Name: name, Error: err.Error()}
	case !found:
		return &StatusMachine{Name: name, Error: "does not exist"}
	}
	sm := &StatusMachine{Name: m.Name, Provider: m.Provider, State: m.State, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB}
	if m.State == machine.Running && !m.LastUp.IsZero() {
		sm.Uptime = d.Now().Sub(m.LastUp).Round(time.Second).String()
	}
	return sm
}

func fillStatus(ctx context.Context, now time.Time, e Engine, r *StatusReport) error {
	svc, err := e.Service(ctx)
	if err != nil {
		return err
	}
	r.Connection.Reachable, r.Connection.Server, r.Connection.Rootless = true, svc.Version, svc.Rootless
	// Stopped ones too: a session killed before its clean-up leaves its container behind.
	sessions, err := e.Containers(ctx, LabelManaged+"=true", true)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if s.Labels[LabelWorkspace] != "" {
			continue // listed with its workspace
		}
		uptime := now.Sub(s.Started).Round(time.Second).String()
		if s.State != "running" {
			uptime = "-"
		}
		r.Sessions = append(r.Sessions, StatusEntry{
			// A session's other containers (its egress gateway sidecar) show their role.
			Name: s.Name, Session: s.Labels[LabelSession], Tool: firstNonEmpty(s.Labels[LabelTool], s.Labels[LabelRole]),
			Repo: s.Labels[LabelRepo], Profile: s.Labels[LabelProfile], State: firstNonEmpty(s.State, "running"),
			Started: s.Started, Uptime: uptime,
		})
	}
	sort.SliceStable(r.Sessions, func(i, j int) bool { return r.Sessions[i].Started.Before(r.Sessions[j].Started) })
	img, found, err := e.Image(ctx, r.Image.Ref)
	if err != nil {
		return err
	}
	r.Image.Present, r.Image.ID, r.Image.Digest = found, img.ID, img.Digest
	return nil
}

// WriteStatus prints the report for a human.
func WriteStatus(w io.Writer, r StatusReport) error {
	if m := r.Machine; m != nil {
		line := fmt.Sprintf("%s (%s): %s, %s", m.Name, m.Provider, m.State, machine.Info{CPUs: m.CPUs, MemoryMiB: m.MemoryMiB}.Resources())
		if m.Uptime != "" {
			line += ", up " + m.Uptime
		}
		if m.Error != "" {
			line = m.Name + ": " + m.Error
		}
		fmt.Fprintf(w, "Machine     %s\n", line)
	}
	api := fmt.Sprintf("%s (%s)", orNone(r.Connection.URI), orNone(r.Connection.Source))
	if r.Connection.Reachable {
		mode := "rootful"
		if r.Connection.Rootless {
			mode = "rootless"
		}
		api += fmt.Sprintf(", server %s, %s", r.Connection.Server, mode)
	} else {
		api += ": not reachable"
	}
	fmt.Fprintf(w, "Podman API  %s\n", api)
	img := r.Image.Ref + ": not present locally"
	if r.Image.Present {
		img = fmt.Sprintf("%s: present, id %.12s, digest %s", r.Image.Ref, r.Image.ID, r.Image.Digest)
	}
	if !r.Connection.Reachable {
		img = r.Image.Ref + ": unknown (no API)"
	}
	fmt.Fprintf(w, "Image       %s\n", img)
	if len(r.Workspaces) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WORKSPACE\tSTATE\tUPTIME\tCPU\tMEMORY\tPIDS\tBRANCH\tREPOSITORY")
		for _, s := range r.Workspaces {
			cpu, mem, pids := "-", "-", "-"
			if u := s.Usage; u != nil {
				cpu, mem, pids = fmt.Sprintf("%.1f%%", u.CPUPercent), fmt.Sprintf("%s / %s", mib(u.MemoryBytes), mib(u.MemoryLimit)), fmt.Sprint(u.PIDs)
			}
			state := s.State
			if s.Error != "" {
				state += " (" + s.Error + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, state, orDash(s.Uptime), cpu, mem, pids, orDash(s.Branch), s.Repo)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Sessions) == 0 {
		_, err := fmt.Fprintln(w, "Sessions    none running")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tTOOL\tSTATE\tREPOSITORY\tSTARTED\tUPTIME")
	left := 0
	for _, s := range r.Sessions {
		if s.State != "running" {
			left++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Tool, s.State, s.Repo, s.Started.Format(time.RFC3339), s.Uptime)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if left > 0 {
		_, err := fmt.Fprintf(w, "%d stopped: left behind by a session that was killed before its clean-up; sourceosctl agent-machine stop removes them\n", left)
		return err
	}
	return nil
}

// StopSessions stops and removes this tool's running session containers, found by their
// labels (each session removes its own; this cleans up after one that was killed). A dry
// run lists them. Every container is tried; the error joins every failure.
func StopSessions(ctx context.Context, e Engine, stopTimeout time.Duration, dryRun bool, out, errOut io.Writer) error {
	sessions, err := e.Containers(ctx, LabelManaged+"=true", true) // stopped ones too: left by a killed session
	if err != nil {
		return err
	}
	kept := sessions[:0]
	for _, s := range sessions {
		// A workspace is brought down with down, which brings its work back.
		if s.Labels[LabelWorkspace] == "" {
			kept = append(kept, s)
		}
	}
	sessions = kept
	if len(sessions) == 0 {
		fmt.Fprintln(errOut, "No running sessions.")
		return nil
	}
	var errs []error
	for _, s := range sessions {
		running := s.State == "" || s.State == "running"
		if dryRun {
			verb := "stop and remove"
			if !running {
				verb = "remove (" + s.State + ")"
			}
			fmt.Fprintf(out, "would %s %s (session %s, %s)\n", verb, s.Name, s.Labels[LabelSession], s.Labels[LabelTool])
			continue
		}
		if running {
			if err := e.Stop(ctx, s.ID, stopTimeout); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := e.Remove(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "✓ stopped %s\n", s.Name)
	}
	return errors.Join(errs...)
}

func mib(b uint64) string { return fmt.Sprintf("%dMiB", b>>20) }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
