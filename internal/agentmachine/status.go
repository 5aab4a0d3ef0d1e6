package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

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
	Image         StatusImage    `json:"image"`
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
	Name    string    `json:"name"`
	Session string    `json:"session"`
	Tool    string    `json:"tool"`
	Repo    string    `json:"repo"`
	Profile string    `json:"profile"`
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
	Connect  Connector
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
	return r, err
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
	sessions, err := e.Containers(ctx, LabelManaged+"=true", false)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		r.Sessions = append(r.Sessions, StatusEntry{
			// A session's other containers (its egress gateway sidecar) show their role.
			Name: s.Name, Session: s.Labels[LabelSession], Tool: firstNonEmpty(s.Labels[LabelTool], s.Labels[LabelRole]),
			Repo: s.Labels[LabelRepo], Profile: s.Labels[LabelProfile],
			Started: s.Started, Uptime: now.Sub(s.Started).Round(time.Second).String(),
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
	if len(r.Sessions) == 0 {
		_, err := fmt.Fprintln(w, "Sessions    none running")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tTOOL\tREPOSITORY\tSTARTED\tUPTIME")
	for _, s := range r.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Tool, s.Repo, s.Started.Format(time.RFC3339), s.Uptime)
	}
	return tw.Flush()
}

// StopSessions stops and removes this tool's running session containers, found by their
// labels (each session removes its own; this cleans up after one that was killed). A dry
// run lists them. Every container is tried; the error joins every failure.
func StopSessions(ctx context.Context, e Engine, stopTimeout time.Duration, dryRun bool, out, errOut io.Writer) error {
	sessions, err := e.Containers(ctx, LabelManaged+"=true", false)
	if err != nil {
		return err
	}
	if len(sessions) == 0 {
		fmt.Fprintln(errOut, "No running sessions.")
		return nil
	}
	var errs []error
	for _, s := range sessions {
		if dryRun {
			fmt.Fprintf(out, "would stop and remove %s (session %s, %s)\n", s.Name, s.Labels[LabelSession], s.Labels[LabelTool])
			continue
		}
		if err := e.Stop(ctx, s.ID, stopTimeout); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := e.Remove(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "✓ stopped %s\n", s.Name)
	}
	return errors.Join(errs...)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
