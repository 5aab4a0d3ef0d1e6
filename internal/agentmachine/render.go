package agentmachine

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sourceos/sourceosctl/internal/policy"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// PodmanArgs is the `podman run` command line equivalent to the plan, for a reviewer to read
// or run by hand. Secrets are referenced by their per-session names: they exist only while a
// session runs.
func PodmanArgs(pl *Plan) []string {
	s := pl.Container
	args := []string{"podman"}
	if pl.Connection.URI != "" {
		args = append(args, "--url", pl.Connection.URI)
	}
	args = append(args, "run", "--rm", "--interactive")
	if s.Init {
		args = append(args, "--init")
	}
	if s.TTY {
		args = append(args, "--tty")
	}
	args = append(args, "--name", s.Name)
	for _, k := range sortedKeys(s.Labels) {
		args = append(args, "--label", k+"="+s.Labels[k])
	}
	if s.UserNS != "" {
		args = append(args, "--userns", s.UserNS)
	}
	args = append(args, "--user", s.User, "--workdir", s.WorkDir)
	for _, c := range s.CapDrop {
		args = append(args, "--cap-drop", c)
	}
	for _, c := range s.CapAdd {
		args = append(args, "--cap-add", c)
	}
	if s.NoNewPrivileges {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	if s.ReadOnlyRoot {
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	if s.SecurityLabel != "" {
		args = append(args, "--security-opt", "label="+s.SecurityLabel)
	}
	if s.SeccompProfile != "" {
		args = append(args, "--security-opt", "seccomp="+s.SeccompProfile)
	}
	for _, ns := range s.Namespaces {
		flag := "--" + ns
		if ns == "cgroup" {
			flag = "--cgroupns"
		}
		args = append(args, flag, "private")
	}
	if s.Hostname != "" {
		args = append(args, "--hostname", s.Hostname)
	}
	if s.Umask != "" {
		args = append(args, "--umask", s.Umask)
	}
	if s.ShmSizeBytes > 0 {
		args = append(args, "--shm-size", strconv.FormatInt(s.ShmSizeBytes, 10))
	}
	args = append(args, "--oom-score-adj", strconv.Itoa(s.OOMScoreAdj))
	for _, k := range sortedKeys(s.Sysctls) {
		args = append(args, "--sysctl", k+"="+s.Sysctls[k])
	}
	args = append(args, "--network", s.Network)
	for _, t := range s.Tmpfs {
		args = append(args, "--tmpfs", t.Target+":"+strings.Join(t.Options(), ","))
	}
	for _, o := range s.Overlays {
		args = append(args, "--volume", o.Source+":"+o.Target+":O,"+strings.Join(o.Options(), ","))
	}
	for _, v := range s.Volumes {
		args = append(args, "--volume", v.Name+":"+v.Target+":"+strings.Join(v.Options(), ","))
	}
	for _, m := range s.Mounts {
		// As the session's own bind (option "bind" through the API): file systems mounted
		// below the source are not carried into the container (the CLI's default is rbind).
		opt := "type=bind,source=" + m.Source + ",destination=" + m.Target + ",bind-nonrecursive"
		if m.ReadOnly {
			opt += ",ro=true"
		}
		args = append(args, "--mount", opt)
	}
	args = append(args, "--pids-limit", strconv.FormatInt(s.Limits.Pids, 10),
		"--memory", strconv.FormatInt(s.Limits.MemoryBytes, 10), "--memory-swap", strconv.FormatInt(s.Limits.MemoryBytes, 10),
		"--cpus", strconv.FormatFloat(s.Limits.CPUs, 'f', -1, 64))
	for _, k := range sortedKeys(s.Env) {
		args = append(args, "--env", k+"="+s.Env[k])
	}
	for _, n := range pl.PassEnv {
		args = append(args, "--env", n) // podman takes the value from its own environment
	}
	for _, sec := range s.Secrets {
		args = append(args, "--secret", sec.Name+",type=env,target="+sec.EnvVar)
	}
	entry, _ := json.Marshal(s.Command[:1])
	args = append(args, "--entrypoint", string(entry), s.Image)
	return append(args, s.Command[1:]...)
}

// ShellQuote joins argv into one line a POSIX shell reads back as the same argv.
func ShellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// WriteTable prints the plan for a human reviewer.
func WriteTable(w io.Writer, pl *Plan) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := pl.Container
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Session", pl.SessionID)
	row("Profile", fmt.Sprintf("%s (%s, sha256:%s)", pl.Profile.Name, pl.Profile.Source, short(pl.Profile.SHA256)))
	row("Connection", fmt.Sprintf("%s (%s)", orDash(pl.Connection.URI), orDash(pl.Connection.Source)))
	rootless := strconv.FormatBool(pl.Rootless)
	if pl.RootlessAssumed {
		rootless += " (assumed)"
	}
	row("Rootless", rootless)
	img := pl.Image.Ref
	if pl.Image.Digest != "" {
		img += " pinned to " + pl.Image.Digest
	}
	row("Image", img)
	row("Tool", pl.Tool.Name)
	if pr := pl.Project; pr != nil {
		for i, st := range pr.Steps {
			row(label(i, "Project "+pr.Action), fmt.Sprintf("%s: %s (from %s)", st.Name, st.Run, orDash(pr.Source)))
		}
	}
	row("Command", ShellQuote(s.Command))
	row("Container", s.Name)
	row("User", s.User+userNS(s.UserNS))
	row("Working dir", s.WorkDir)
	row("Workspace", workspaceSummary(pl.Workspace, pl.Repo))
	for _, c := range pl.Workspace.PostCreate {
		row("Post-create", c.Name+": "+ShellQuote(c.Command)+" (once, when created; a join)")
	}
	for _, c := range pl.Workspace.PostStart {
		row("Post-start", c.Name+": "+ShellQuote(c.Command)+" (each time it comes up; a join)")
	}
	for i, m := range mountSummary(s.Mounts) {
		row(label(i, "Mounts"), m)
	}
	for i, o := range s.Overlays {
		row(label(i+len(s.Mounts), "Mounts"), fmt.Sprintf("%s -> %s (copy-on-write, writes to %s)", o.Source, o.Target, o.Upper))
	}
	for i, t := range s.Tmpfs {
		row(label(i, "Writable tmpfs"), fmt.Sprintf("%s (%d MiB)", t.Target, t.SizeBytes>>20))
	}
	row("Root filesystem", readOnly(s.ReadOnlyRoot))
	row("Capabilities", "drop "+strings.Join(s.CapDrop, ",")+addCaps(s.CapAdd))
	row("No new privileges", strconv.FormatBool(s.NoNewPrivileges))
	row("Seccomp", firstNonEmpty(s.SeccompProfile, "the server's default"))
	row("Namespaces", "private "+orDash(strings.Join(s.Namespaces, ", ")))
	row("Settings", fmt.Sprintf("hostname %s, umask %s, /dev/shm %d MiB, OOM score adjustment %d", orDash(s.Hostname), orDash(s.Umask), s.ShmSizeBytes>>20, s.OOMScoreAdj))
	check := "none: the server's inspect only"
	if pl.Helper != nil {
		check = "sourceos-helper " + short(strings.TrimPrefix(pl.Helper.Digest, "sha256:")) + ", before the tool"
	}
	row("Inside check", check)
	row("Network", networkSummary(pl))
	if d := pl.Decision.Egress; d != nil {
		writeEgressRules(row, d)
	}
	row("Limits", fmt.Sprintf("cpus %g, memory %d MiB, pids %d", s.Limits.CPUs, s.Limits.MemoryBytes>>20, s.Limits.Pids))
	row("Environment", strings.Join(append(sortedKeys(s.Env), pl.PassEnv...), ", "))
	var secrets []string
	for _, sd := range pl.SecretSources {
		if len(sd.Inject) == 0 {
			secrets = append(secrets, fmt.Sprintf("%s as $%s (from %s)", sd.Name, sd.EnvVar, sd.Source))
			continue
		}
		var hosts []string
		for _, in := range sd.Inject {
			hosts = append(hosts, in.Hosts...)
		}
		secrets = append(secrets, fmt.Sprintf("%s injected by the gateway for %s (from %s; $%s holds a placeholder)", sd.Name, strings.Join(hosts, ", "), sd.Source, sd.EnvVar))
	}
	if pl.Decision.GitIdentity {
		secrets = append(secrets, "git identity (--auth git: the host's user.name and user.email as GIT_AUTHOR_*/GIT_COMMITTER_*)")
	}
	row("Secrets", orDash(strings.Join(secrets, "; ")))
	if ts := pl.ToolState; ts != nil {
		row("Tool state", fmt.Sprintf("volume %s at %s ($%s), kept across this profile's sessions", ts.Volume, ts.Target, ts.Env))
	}
	row("TTY", strconv.FormatBool(s.TTY))
	row("Policy hash", pl.PolicyHash)
	keep := "removed after the session"
	switch {
	case pl.Workspace.Name != "":
		keep = "kept running as workspace " + pl.Workspace.Name + " until down (then removed; its copy and branch stay until rm)"
	case pl.Keep:
		keep = "kept after the session (--keep)"
	}
	row("Afterwards", keep)
	for i, n := range pl.Notes {
		row(label(i, "Notes"), n)
	}
	for i, n := range pl.Warnings {
		row(label(i, "WARNINGS"), n)
	}
	return tw.Flush()
}

// networkSummary is the container's network and, with the gateway, how it is reached.
func networkSummary(pl *Plan) string {
	if pl.Egress == nil {
		return pl.Container.Network
	}
	return fmt.Sprintf("%s but the egress gateway (proxy %s, socket %s)", pl.Container.Network, pl.Egress.Proxy, pl.Egress.Socket)
}

// writeEgressRules prints the effective egress policy, each rule with its source.
func writeEgressRules(row func(k, v string), d *policy.EgressDecision) {
	if len(d.Allow) == 0 {
		row("Egress allow", "nothing: every destination is refused (add spec.network.egress.allow or --allow-host)")
	}
	for i, r := range d.Allow {
		row(label(i, "Egress allow"), r.Rule+"  ("+r.Source+")")
	}
	for i, r := range d.Deny {
		row(label(i, "Egress deny"), r.Rule+"  ("+r.Source+"; deny wins)")
	}
	for i, r := range d.Unallowed {
		row(label(i, "Not allowed"), r.Rule+"  ("+r.Source+": listed, not allowed unless a rule adds it)")
	}
	row("Egress refuses", "loopback, link-local, private, CGNAT, metadata and this host's addresses, unless an address rule names them")
}

// WriteRefusals prints a refused plan's decisions so a reviewer sees every mount's verdict.
func WriteRefusals(w io.Writer, pl *Plan) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "VERDICT\tROLE\tPATH\tRULE\tREASON\n")
	for _, m := range pl.Decision.Mounts {
		verdict := "allow"
		if !m.Allowed {
			verdict = "REFUSE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", verdict, m.Role, m.Declared, m.Rule, m.Reason)
	}
	return tw.Flush()
}

func label(i int, name string) string {
	if i == 0 {
		return name
	}
	return ""
}

func userNS(ns string) string {
	if ns == "" {
		return ""
	}
	return " (userns " + ns + ")"
}

func readOnly(ro bool) string {
	if ro {
		return "read-only"
	}
	return "writable"
}

func addCaps(add []string) string {
	if len(add) == 0 {
		return ", add none"
	}
	return ", add " + strings.Join(add, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// workspaceSummary is how the session sees the repository, in one line.
func workspaceSummary(w WorkspacePlan, repo string) string {
	switch {
	case w.Copy != nil:
		return fmt.Sprintf("its own copy at %s, branch %s", w.Copy.Dir, w.Copy.Branch)
	case w.Mode == WorkspaceDirect && (repocopy.IsRepository(repo) || repocopy.IsLinkedWorkTree(repo)):
		return "direct: the live work tree (its .git read-only)"
	case w.Mode == WorkspaceDirect:
		return "direct: the live directory (no .git: one the session makes there is moved aside afterwards)"
	case w.Mode == WorkspaceReadOnly:
		return "read-only"
	case w.Mode == WorkspaceVolume && w.ReadOnly:
		return "volume " + w.Volume + " on the remote service: the repository's files, read-only"
	case w.Mode == WorkspaceVolume:
		return "volume " + w.Volume + " on the remote service: the repository's files; the changes come back as a patch"
	}
	return "-"
}
