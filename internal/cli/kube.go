package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sourceos/sourceosctl/internal/agentmachine"
	"github.com/sourceos/sourceosctl/internal/kube"
)

func newKubeCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Run an exported Kubernetes pod on Podman, checked as a governed session",
		Long: `A session's plan exports as Kubernetes objects with --dry-run -o kube: a Pod (or an
agent-sandbox Sandbox with --kube-kind sandbox) with every capability dropped, no privilege
escalation, a read-only root, a non-root user, the RuntimeDefault seccomp profile, no service
account token, memory-backed emptyDirs for the session's tmpfs paths, the workspace as a
PersistentVolumeClaim, and a NetworkPolicy denying it all traffic.

kube play runs such a pod on the Podman service, the way a cluster would, and checks it as a
session is checked: the pod is created without starting, each container the server made is
compared with what a governed session must be (not with the manifest, which anyone can edit),
and the pod starts only when nothing differs. Otherwise it is removed and the differences
are listed.`,
		Example: `  sourceosctl agent-machine shell --repo . --dry-run -o kube > pod.yaml
  sourceosctl agent-machine kube play pod.yaml`,
		Args: noArgs,
		RunE: helpOnly,
	}
	cmd.AddCommand(newKubePlayCmd(f, g))
	return cmd
}

func newKubePlayCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	var noStart bool
	var output string
	cmd := &cobra.Command{
		Use:   "play FILE [--no-start] [-o table|json]",
		Short: "Create an exported pod with no network, check it as governed, then start it",
		Long: `Create the Pod of FILE (the output of --dry-run -o kube) on the Podman service with no
network (kube play applies no NetworkPolicy; the exported one denies all traffic), compare
each container the server created with a governed session — capabilities, no-new-privileges,
read-only root, user, namespaces, mounts, devices, security options, limits, environment —
and start the pod only when nothing differs. A difference removes the pod before anything
ran in it and exits 3, listing each one. A Sandbox needs the agent-sandbox controller of a
cluster: export with --kube-kind pod to play here.`,
		Example: `  sourceosctl agent-machine kube play pod.yaml
  sourceosctl agent-machine kube play pod.yaml --no-start -o json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(output, outTable, outJSON); err != nil {
				return err
			}
			return kubePlay(cmd.Context(), f, g, args[0], !noStart, output)
		},
	}
	cmd.Flags().BoolVar(&noStart, "no-start", false, "create and check the pod, but do not start it")
	addOutputFlag(cmd, &output, outTable, outJSON)
	return cmd
}

func kubePlay(ctx context.Context, f *Factory, g *GlobalOptions, file string, start bool, output string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return usageErrorf("read the manifest: %v", err)
	}
	m, err := kube.Decode(file, data)
	if err != nil {
		return err
	}
	prof, err := f.LoadProfile(g.Profile)
	if err != nil {
		return err
	}
	e, _, err := f.Connect(ctx, g.Connection, agentmachine.MachineOf(prof))
	if err != nil {
		return err
	}
	ke, ok := e.(kube.Engine)
	if !ok {
		return fmt.Errorf("this Podman connection cannot play Kubernetes manifests")
	}
	played, err := kube.Play(ctx, ke, m, start)
	if err != nil {
		return err
	}
	if output == outJSON {
		return writeJSON(f.IO.Out, played)
	}
	state := "created, checked as governed and started"
	if !start {
		state = "created and checked as governed (not started)"
	}
	fmt.Fprintf(f.IO.Out, "pod %s %s\nremove it with: podman pod rm -f %s && podman volume rm %s\n", played.Pod, state, played.Pod, strings.Join(played.Volumes, " "))
	return nil
}
