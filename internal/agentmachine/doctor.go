package agentmachine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/repowatch"
	"github.com/sourceos/sourceosctl/internal/textsafe"

	"github.com/sourceos/sourceosctl/internal/machine"
)

// Check statuses.
const (
	StatusOK   = "ok"
	StatusWarn = "warn"
	StatusFail = "fail"
)

// DoctorSchemaVersion identifies doctor's JSON output.
const DoctorSchemaVersion = "sourceos.dev/agent-machine-doctor/v1"

// Check is one finding of doctor.
type Check struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Finding string `json:"finding"`
	Fix     string `json:"fix,omitempty"`
}

// Report is doctor's result.
type Report struct {
	SchemaVersion string  `json:"schemaVersion"`
	Checks        []Check `json:"checks"`
	Summary       Summary `json:"summary"`
}

type Summary struct {
	OK       int `json:"ok"`
	Warnings int `json:"warnings"`
	Failures int `json:"failures"`
}

// Runner runs an external command and returns its standard output (internal/podman's
// ExecRunner is one).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// APIStatus is what doctor learns from the Podman service.
type APIStatus struct {
	URI, Source    string
	ServerVersion  string
	Rootless       bool
	CgroupsVersion string
}

// DoctorDeps are doctor's probes. Every one only reads: doctor changes nothing.
type DoctorDeps struct {
	GOOS, GOARCH string
	Getenv       func(string) string
	UID          int
	Username     string
	Runner       Runner
	LookPath     func(string) (string, error)
	ReadFile     func(string) ([]byte, error)
	Stat         func(string) (fs.FileInfo, error)
	// API resolves and pings the Podman service (never starting one).
	API func(ctx context.Context) (APIStatus, error)
	// ImagePresent asks the service whether the image is in local storage.
	ImagePresent func(ctx context.Context, ref string) (bool, error)
	// Machine reports the profile's Podman machine (macOS, Windows, or a Linux profile
	// that names one).
	Machine func(ctx context.Context, m machine.Ref) (machine.Info, error)
	Profile func() (*profile.Profile, error)
	Dirs    Dirs
	Repo    string // resolved; "" when none was given and the profile names none
	Timeout time.Duration
	// Git reads the repository the way sessions do (never running anything from it).
	Git GitReader
	// RuntimeDir is the rootless runtime directory Podman uses and why (Linux, not root).
	RuntimeDir func() (RuntimeDirInfo, error)
}

// RuntimeDirInfo is where a rootless Podman keeps its state and API socket, and why there.
type RuntimeDirInfo struct {
	Path, Socket, Why string
	Absent            bool // Podman creates it on first use
}

type probe struct {
	id, name string
	run      func(ctx context.Context) Check
}

// Doctor runs every check concurrently, each under the timeout, and returns them in a
// stable order. A probe that hangs becomes a failed check; it cannot hang doctor.
func Doctor(ctx context.Context, d DoctorDeps) Report {
	prof, profErr := d.Profile()
	probes := []probe{
		{"host", "Host", d.checkHost},
		{"podman-cli", "Podman CLI", d.checkPodmanCLI},
		{"podman-api", "Podman API", d.checkAPI},
	}
	if ref := MachineOf(prof); ref.Name != "" || d.GOOS == "darwin" || d.GOOS == "windows" {
		probes = append(probes, probe{"machine", "Podman machine", func(ctx context.Context) Check { return d.checkMachine(ctx, ref) }})
	}
	if d.GOOS == "linux" {
		probes = append(probes, probe{"rootless", "Rootless readiness", d.checkRootless})
	}
	probes = append(probes,
		probe{"git", "git", d.checkGit},
		probe{"nix", "nix", d.checkNix},
		probe{"repo", "Repository", d.checkRepo},
		probe{"profile", "Profile", func(context.Context) Check { return checkProfile(prof, profErr) }},
		probe{"signing-key", "Signing key", d.checkKey},
		probe{"session-log", "Session log", d.checkSessionLog},
		probe{"copies", "Session copies", d.checkCopies},
		probe{"watchers", "Repository watchers", d.checkWatchers},
	)
	if prof != nil {
		probes = append(probes, probe{"image", "Image", func(ctx context.Context) Check { return d.checkImage(ctx, prof.Spec.Image.Ref) }})
	}
	if prof != nil && prof.Spec.Network.Mode == profile.NetworkGateway {
		probes = append(probes, probe{"egress-gateway", "Egress gateway", func(ctx context.Context) Check { return d.checkGateway(ctx, prof) }})
	}
	checks := make([]Check, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checks[i] = d.runProbe(ctx, p)
		}()
	}
	wg.Wait()
	r := Report{SchemaVersion: DoctorSchemaVersion, Checks: checks}
	for _, c := range checks {
		switch c.Status {
		case StatusOK:
			r.Summary.OK++
		case StatusWarn:
			r.Summary.Warnings++
		default:
			r.Summary.Failures++
		}
	}
	return r
}

func (d DoctorDeps) runProbe(ctx context.Context, p probe) Check {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan Check, 1)
	go func() { done <- p.run(pctx) }()
	var c Check
	select {
	case c = <-done:
	case <-pctx.Done():
		c = Check{Status: StatusFail, Finding: fmt.Sprintf("no answer within %s", timeout), Fix: "run the probe by hand to see why it hangs (see --verbose)"}
	}
	c.ID, c.Name = p.id, p.name
	return c
}

// MachineOf is the profile's machine (its name and provider), if it uses one.
func MachineOf(p *profile.Profile) machine.Ref {
	if p == nil || p.Spec.Machine == nil {
		return machine.Ref{}
	}
	return machine.Ref{Name: p.Spec.Machine.Name, Provider: p.Spec.Host.Provider}
}

func ok(finding string) Check { return Check{Status: StatusOK, Finding: finding} }
func warn(finding, fix string) Check {
	return Check{Status: StatusWarn, Finding: finding, Fix: fix}
}
func fail(finding, fix string) Check {
	return Check{Status: StatusFail, Finding: finding, Fix: fix}
}

func (d DoctorDeps) checkHost(ctx context.Context) Check {
	finding := d.GOOS + "/" + d.GOARCH
	if d.GOOS == "linux" {
		if out, err := d.Runner.Run(ctx, "uname", "-r"); err == nil {
			finding += ", kernel " + strings.TrimSpace(string(out))
		}
	}
	switch d.GOOS {
	case "linux", "darwin", "windows":
		return ok(finding)
	}
	return warn(finding+": not a supported host OS", "use Linux, macOS or Windows")
}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion finds the first x.y[.z] in s.
func ParseVersion(s string) (major, minor int, ok bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor, true
}

func (d DoctorDeps) installPodman() string {
	switch d.GOOS {
	case "darwin":
		return "brew install podman"
	case "windows":
		return "winget install RedHat.Podman"
	}
	return "sudo apt-get install podman runc catatonit uidmap slirp4netns   # or your distribution's package manager"
}

func (d DoctorDeps) checkPodmanCLI(ctx context.Context) Check {
	if _, err := d.LookPath("podman"); err != nil {
		return fail("podman is not installed (not on PATH)", d.installPodman())
	}
	out, err := d.Runner.Run(ctx, "podman", "--version")
	if err != nil {
		return fail("podman --version failed: "+firstLine(err.Error()), d.installPodman())
	}
	v := strings.TrimSpace(string(out))
	major, minor, found := ParseVersion(v)
	switch {
	case !found:
		return warn("cannot read the version from "+strconv.Quote(v), "")
	case major < 4:
		return fail(v+": Podman 4.0 or newer is required", d.installPodman())
	case major == 4 && minor < 4:
		return warn(v+": Podman 4.4 or newer is recommended", "upgrade Podman (see https://podman.io/docs/installation)")
	}
	return ok(v)
}

func (d DoctorDeps) checkAPI(ctx context.Context) Check {
	st, err := d.API(ctx)
	if err != nil {
		fix := ""
		var h interface{ Hint() string }
		if errors.As(err, &h) {
			fix = h.Hint()
		}
		return fail(firstLine(err.Error()), fix)
	}
	mode := "rootful"
	if st.Rootless {
		mode = "rootless"
	}
	return ok(fmt.Sprintf("%s (%s), server %s, %s, cgroups %s", st.URI, st.Source, st.ServerVersion, mode, st.CgroupsVersion))
}

func (d DoctorDeps) checkMachine(ctx context.Context, ref machine.Ref) Check {
	if ref.Name == "" {
		return fail("the profile names no Podman machine, and this OS needs one", "add spec.machine.name to the profile (see profiles/examples)")
	}
	if d.Machine == nil {
		return fail("cannot inspect Podman machines here", "")
	}
	m, err := d.Machine(ctx, ref)
	if err != nil {
		fix := ""
		var h interface{ Hint() string }
		if errors.As(err, &h) {
			fix = h.Hint()
		}
		return fail(firstLine(err.Error()), fix)
	}
	finding := fmt.Sprintf("%s (%s): %s, %s", m.Name, m.Provider, m.State, m.Resources())
	switch {
	case m.MountsUnknown != "":
		// Unknown is not "none": the machine may share the whole home directory.
		return warn(finding+"; its shared folders are unknown ("+m.MountsUnknown+"), so a share of your whole home directory cannot be ruled out",
			"see what the VM mounts: "+machine.Command{Provider: m.Provider, Args: []string{"machine", "ssh", m.Name, "findmnt", "-t", "virtiofs,9p,drvfs"}}.Shell(d.GOOS, ShellQuote))
	case len(m.Mounts) > 0:
		finding += ", shares " + strings.Join(m.Mounts, ", ")
	}
	if wide := wideShares(m, d.Getenv); wide != "" {
		return warn(finding+"; it shares "+wide+", so the container allowlist is the only wall around your files",
			"recreate the machine sharing only your workspace roots: "+initHint(m, d.GOOS))
	}
	if m.State != machine.Running {
		return warn(finding, "sourceosctl agent-machine start")
	}
	return ok(finding)
}

func (d DoctorDeps) checkRootless(ctx context.Context) Check {
	var problems, fixes []string
	if d.UID != 0 {
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			data, err := d.ReadFile(f)
			if err != nil || !hasRange(string(data), d.Username, d.UID) {
				problems = append(problems, "no "+filepath.Base(f)+" range for "+d.Username)
				fixes = append(fixes, fmt.Sprintf("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", d.Username))
			}
		}
	}
	runtime := ""
	if d.UID != 0 && d.RuntimeDir != nil {
		rd, err := d.RuntimeDir()
		if err != nil {
			problems = append(problems, err.Error())
			var h interface{ Hint() string }
			if errors.As(err, &h) {
				fixes = append(fixes, h.Hint())
			}
		} else {
			runtime = fmt.Sprintf("; runtime directory %s (%s), API socket %s", rd.Path, rd.Why, rd.Socket)
		}
	}
	if _, err := d.LookPath("newuidmap"); err != nil {
		problems = append(problems, "newuidmap is missing")
		fixes = append(fixes, "sudo apt-get install uidmap")
	}
	cgroups := "v1"
	if st, err := d.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && !st.IsDir() {
		cgroups = "v2"
	}
	if len(problems) > 0 {
		return fail(strings.Join(problems, "; "), dedupe(fixes))
	}
	finding := "cgroups " + cgroups
	if d.UID == 0 {
		return ok("running as root: sessions use rootful Podman with a non-root user inside (" + finding + ")")
	}
	if cgroups == "v1" {
		return warn(finding+": rootless Podman cannot enforce cpu, memory and pids limits on cgroups v1"+runtime,
			"boot with systemd.unified_cgroup_hierarchy=1, or use the rootful service")
	}
	return ok(finding + ", subuid/subgid ranges and newuidmap present" + runtime)
}

func hasRange(data, user string, uid int) bool {
	for _, line := range strings.Split(data, "\n") {
		name, _, _ := strings.Cut(line, ":")
		if name == user || name == strconv.Itoa(uid) {
			return true
		}
	}
	return false
}

func (d DoctorDeps) checkGit(ctx context.Context) Check {
	if _, err := d.LookPath("git"); err != nil {
		return warn("git is not installed: evidence falls back to a slower built-in reader", "sudo apt-get install git   # macOS: xcode-select --install")
	}
	out, err := d.Runner.Run(ctx, "git", "--version")
	if err != nil {
		return warn("git --version failed: "+firstLine(err.Error()), "")
	}
	return ok(strings.TrimSpace(string(out)))
}

func (d DoctorDeps) checkNix(ctx context.Context) Check {
	if _, err := d.LookPath("nix"); err != nil {
		return ok("not installed (optional)")
	}
	out, err := d.Runner.Run(ctx, "nix", "--version")
	if err != nil {
		return ok("installed, but nix --version failed (optional)")
	}
	return ok(strings.TrimSpace(string(out)))
}

// checkRepo reads the repository the way sessions do: with git when it may (git refuses
// another user's repository, and overriding that would let the repository's configuration
// run programs), else with go-git, which runs nothing.
func (d DoctorDeps) checkRepo(ctx context.Context) Check {
	if d.Repo == "" {
		return warn("no repository given and the profile names none", "sourceosctl agent-machine doctor --repo PATH")
	}
	st, err := d.Stat(d.Repo)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(d.Repo+" does not exist", "check the path given with --repo")
	case err != nil:
		return fail(d.Repo+": "+err.Error(), "")
	case !st.IsDir():
		return fail(d.Repo+" is not a directory", "give the repository's directory")
	}
	owner, group := PathOwner(d.Repo)
	whose := ""
	if owner != d.UID {
		whose = fmt.Sprintf(", owned by uid %d", owner)
	}
	g := d.Git.State(ctx, d.Repo)
	var c Check
	switch {
	case g.Absent == "not a git work tree":
		c = warn(d.Repo+whose+" is readable but not a git work tree: evidence will carry no commit", "git -C "+d.Repo+" init   # only if it should be a repository")
	case g.Absent != "":
		c = warn(d.Repo+whose+": "+g.Absent, "")
	default:
		branch := g.Branch
		if branch == "" {
			branch = "detached HEAD"
		}
		finding := fmt.Sprintf("%s%s is a git work tree (%s at %.12s", d.Repo, whose, branch, g.Commit)
		if g.Dirty {
			finding += ", uncommitted changes"
		}
		finding += ")"
		if g.Reader == "go-git" && owner != d.UID {
			finding += "; read with go-git, as sessions read it: git refuses another user's repository, and sourceosctl never overrides that"
		}
		c = ok(finding)
	}
	if d.UID == 0 && d.GOOS == "linux" {
		if problem := RepoWriteProblem(owner, group, st.Mode().Perm()); problem != "" {
			return warn(c.Finding+"; "+problem, fmt.Sprintf("chown -R %d:%d %s   # or run sourceosctl as the user who owns the work", fallbackUID, fallbackUID, d.Repo))
		}
	}
	return c
}

func checkProfile(p *profile.Profile, err error) Check {
	if err != nil {
		return fail(firstLine(err.Error()), "fix the profile as the message says, or start from an example: sourceosctl agent-machine init --repo PATH")
	}
	return ok(fmt.Sprintf("%s (%s) is valid", p.Metadata.Name, p.Source))
}

// SigningKeyPaths are where evidence signing keys live.
func (d Dirs) SigningKeyPaths() (private, public string) {
	return filepath.Join(d.Config, "keys", "evidence.key"), filepath.Join(d.Config, "keys", "evidence.pub")
}

// TPMKeyPath is where a TPM-held evidence key is named (its device and label): when it
// exists, sessions sign with that key instead of a file key.
func (d Dirs) TPMKeyPath() string { return filepath.Join(d.Config, "keys", "evidence.tpm") }

func (d DoctorDeps) checkKey(context.Context) Check {
	if ref, found, err := d.Dirs.ReadTPMKeyRef(); err != nil {
		return fail(err.Error(), "write it again with `evidence key create --tpm`, or move it aside to sign with a file key")
	} else if found {
		key, err := LoadTPMKey(ref)
		if err != nil {
			return fail("the evidence key is held by a TPM that cannot be used: "+err.Error(), "check that "+ref.Device+" is there and yours to use")
		}
		defer key.Close()
		return ok(fmt.Sprintf("held by the TPM %s (key %s; never leaves it)", ref.Device, ref.Label))
	}
	priv, _ := d.Dirs.SigningKeyPaths()
	st, err := d.Stat(priv)
	if err != nil {
		return warn("no evidence signing key yet: one is created on first use at "+priv, "")
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fail(fmt.Sprintf("%s is readable by others (mode %v)", priv, st.Mode().Perm()), "chmod 600 "+priv)
	}
	return ok("a file: " + priv)
}

// checkSessionLog checks the session log of this host's evidence directory the fast way (the
// log, its signed checkpoint and which bundles are present; `evidence log verify` reads every
// bundle too).
func (d DoctorDeps) checkSessionLog(context.Context) Check {
	dir := d.Dirs.EvidenceDir()
	_, pubPath := d.Dirs.SigningKeyPaths()
	pub, err := evidence.LoadPublicKey(pubPath)
	if err != nil {
		return ok("none yet: the first session starts it")
	}
	res, err := evidencelog.Verify(dir, pub, evidencelog.VerifyOptions{Fast: true})
	var noLog *evidencelog.NoLogError
	switch {
	case errors.As(err, &noLog):
		if bundles, _ := evidence.List(dir); len(bundles) > 0 {
			return warn(fmt.Sprintf("%d bundles in %s were written before the session log: the next session takes in those that verify", len(bundles), dir), "")
		}
		return ok("none yet: the first session starts it")
	case err != nil:
		return warn(fmt.Sprintf("cannot check the session log in %s: %v", dir, err), "")
	case !res.OK():
		return fail(fmt.Sprintf("%d problem(s) in the session log of %s, first: %s", len(res.Problems), dir, textsafe.String(res.Problems[0].String())),
			"sourceosctl agent-machine evidence log verify  # names each; an auditor's kept checkpoint (--since) tells what was lost")
	}
	return ok(fmt.Sprintf("%d entries under its signed checkpoint, every logged bundle present (%s)", res.Size, dir))
}

// checkWatchers reports the repositories watched (internal/repowatch): their sessions read
// only what changed.
func (d DoctorDeps) checkWatchers(context.Context) Check {
	dir, err := repowatch.Dir()
	if err != nil {
		return warn("cannot use the watchers' directory: "+err.Error(), "sessions read their repositories in full meanwhile; remove the directory it names")
	}
	repos, err := repowatch.Running(dir)
	if err != nil {
		return warn(err.Error(), "")
	}
	if len(repos) == 0 {
		return ok("none running (the next session on a repository starts one as it ends)")
	}
	return ok(fmt.Sprintf("%d running, for %s (each ends after a day without a session; SOURCEOSCTL_REPO_WATCH=off starts none)", len(repos), strings.Join(repos, ", ")))
}

// checkCopies reports the sessions' copies sourceosctl keeps (see internal/repocopy): how
// many wait for review and what they hold on disk. A copy whose work could not be brought
// back, or whose session ended without a result, is a warning: it holds work only its copy
// has, or it is left over.
func (d DoctorDeps) checkCopies(context.Context) Check {
	copies, broken, err := repocopy.List(d.Dirs.State)
	if err != nil {
		return warn(fmt.Sprintf("cannot read the session copies in %s: %v", repocopy.CopiesDir(d.Dirs.State), err), "")
	}
	if len(copies) == 0 && len(broken) == 0 {
		return ok("no session copies")
	}
	states := map[string]int{}
	var stuck []string
	var size int64
	for _, c := range copies {
		states[c.State()]++
		if st := c.State(); st == repocopy.StateFailed || st == repocopy.StatePreparing {
			stuck = append(stuck, c.Session)
		}
		size += c.DiskUsage()
	}
	var parts []string
	for _, st := range []string{repocopy.StateReview, repocopy.StateFailed, repocopy.StatePreparing, repocopy.StateMerged, repocopy.StateNoChanges} {
		if n := states[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(broken) > 0 {
		parts = append(parts, fmt.Sprintf("%d unreadable", len(broken)))
	}
	finding := fmt.Sprintf("%s (%s on disk in %s)", strings.Join(parts, ", "), humanBytes(size), repocopy.CopiesDir(d.Dirs.State))
	if len(stuck) > 0 || len(broken) > 0 {
		return warn(finding, "look with: sourceosctl agent-machine sessions; a copy not collected holds the agent's work (its upper directory); remove one with: sourceosctl agent-machine discard SESSION (--force for a session that was interrupted)")
	}
	if states[repocopy.StateReview] > 0 {
		return Check{Status: StatusOK, Finding: finding, Fix: "review with: sourceosctl agent-machine sessions, then merge or discard each"}
	}
	return ok(finding)
}

// humanBytes is n in the largest binary unit that keeps it at least 1.
// checkGateway proves a session's egress gateway can start here: on a local Linux service it
// starts one on a socket where sessions put theirs, is refused a destination through it, and
// removes it; on a machine it says the gateway runs there, in a sidecar.
func (d DoctorDeps) checkGateway(ctx context.Context, p *profile.Profile) Check {
	if m := MachineOf(p); d.GOOS != "linux" || m.Name != "" {
		return ok("sessions run the egress gateway in a sidecar container on machine " + orDash(m.Name) + ", next to theirs (shipped there by the first session; not started by doctor)")
	}
	base := EgressBase(d.Getenv("XDG_RUNTIME_DIR"), d.Dirs.State)
	if err := ProbeGateway(ctx, base); err != nil {
		return fail("the egress gateway cannot start: "+err.Error(), "make "+base+" a directory you can write, or set XDG_RUNTIME_DIR")
	}
	return ok("a gateway started on a socket in " + base + ", refused a destination no rule allows, and was removed")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (d DoctorDeps) checkImage(ctx context.Context, ref string) Check {
	if d.ImagePresent == nil {
		return warn("cannot check "+ref+" without the Podman API", "")
	}
	present, err := d.ImagePresent(ctx, ref)
	switch {
	case err != nil:
		return warn("cannot check "+ref+": "+firstLine(err.Error()), "")
	case !present && IsLocalRef(ref):
		return warn(ref+" is not present: localhost/ images are built on this host", BuildImageCommand)
	case !present:
		return warn(ref+" is not present locally: the first session pulls it", "sourceosctl agent-machine image pull")
	}
	return ok(ref + " is present")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func dedupe(fixes []string) string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fixes {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return strings.Join(out, "; ")
}
