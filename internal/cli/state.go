package cli

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/tool"
)

func newStateCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "List and remove the tools' kept state (logins, settings, history)",
		Long: `Each built-in tool keeps its configuration directory — a login done inside a session,
its settings and history — in a Podman volume per profile (sosctl-state-PROFILE-TOOL), so
it survives the next session without mounting anything from your home directory. A login
kept there is readable by the tool and by anything it runs; secrets injected by the egress
gateway never are. Set state: false on a tool in the profile to start fresh every session.`,
		Example: `  sourceosctl agent-machine state list
  sourceosctl agent-machine state rm --tool claude-code
  sourceosctl agent-machine state rm sosctl-state-default-codex --yes`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newStateListCmd(f, g), newStateRmCmd(f, g))
	return cmd
}

// stateEngine reaches the Podman service of the profile's machine (or the connection).
func stateEngine(ctx context.Context, f *Factory, g *GlobalOptions) (agentmachine.Engine, string, error) {
	prof, err := f.LoadProfile(g.Profile)
	if err != nil {
		return nil, "", err
	}
	engine, _, err := f.Connector(g.Connection)(ctx, agentmachine.MachineOf(prof))
	if err != nil {
		return nil, "", err
	}
	return engine, prof.Metadata.Name, nil
}

func newStateListCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o table|json]",
		Short: "List the tools' state volumes on the Podman service",
		Example: `  sourceosctl agent-machine state list
  sourceosctl agent-machine state list -o json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			engine, _, err := stateEngine(cmd.Context(), f, g)
			if err != nil {
				return err
			}
			list, err := agentmachine.ListToolState(cmd.Context(), engine)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(f.IO.Out, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(f.IO.Out, "no tool state kept (a session of claude-code or codex makes its volume)")
				return nil
			}
			tw := tabwriter.NewWriter(f.IO.Out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VOLUME\tPROFILE\tTOOL\tCREATED")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Volume, s.Profile, s.Tool, orDashString(s.Created))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &output, outTable, outJSON)
	return cmd
}

func newStateRmCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var tools []string
	var yes bool
	cmd := &cobra.Command{
		Use:   "rm [VOLUME...] [--tool TOOL] [--yes]",
		Short: "Remove tools' state volumes (their logins, settings and history)",
		Long: `Remove the state volumes named, or with --tool the profile's volume for that tool. Only
volumes sourceosctl made for tool state are removed; your files and the evidence are never
touched. Asks first on a terminal; elsewhere --yes is required. A volume in use by a
running session cannot be removed until it ends.`,
		Example: `  sourceosctl agent-machine state rm --tool claude-code
  sourceosctl agent-machine state rm sosctl-state-default-codex --yes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(tools) == 0 {
				return usageErrorf("name the volumes to remove (see state list), or --tool TOOL for this profile's")
			}
			for _, t := range tools {
				if d, ok := tool.Builtin(t); !ok || d.StateEnv == "" {
					return usageErrorf("--tool %s: only %s keep state", t, strings.Join(stateTools(), " and "))
				}
			}
			engine, profileName, err := stateEngine(cmd.Context(), f, g)
			if err != nil {
				return err
			}
			kept, err := agentmachine.ListToolState(cmd.Context(), engine)
			if err != nil {
				return err
			}
			names := append([]string(nil), args...)
			for _, t := range tools {
				names = append(names, agentmachine.StateVolume(profileName, t))
			}
			var targets []string
			for _, n := range names {
				if !slices.ContainsFunc(kept, func(s agentmachine.ToolState) bool { return s.Volume == n }) {
					return &agentmachine.InputError{Err: fmt.Errorf("%s is not a tool state volume on this service", n), Fix: "see sourceosctl agent-machine state list"}
				}
				if !slices.Contains(targets, n) {
					targets = append(targets, n)
				}
			}
			if !yes {
				if !f.IO.InTTY {
					return usageErrorf("removing %s needs --yes when standard input is not a terminal", strings.Join(targets, ", "))
				}
				fmt.Fprintf(f.IO.ErrOut, "Remove %s (the logins, settings and history kept there)? [y/N] ", strings.Join(targets, ", "))
				answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					fmt.Fprintln(f.IO.ErrOut, "nothing removed")
					return nil
				}
			}
			for _, n := range targets {
				if err := engine.RemoveVolume(cmd.Context(), n); err != nil {
					return err
				}
				fmt.Fprintf(f.IO.Out, "removed %s\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&tools, "tool", nil, "remove this profile's state of `TOOL` (claude-code, codex; repeatable)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

func stateTools() []string {
	var out []string
	for _, n := range tool.Names() {
		if d, ok := tool.Builtin(n); ok && d.StateEnv != "" {
			out = append(out, n)
		}
	}
	return out
}
