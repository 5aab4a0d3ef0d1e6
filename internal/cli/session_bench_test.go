package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkColdSession compares `sourceosctl agent-machine shell --repo R -- true` (the whole
// process: profile, policy, plan, image check, create, inspect-and-verify, attach, start,
// wait, remove, git state, signing the evidence) with the equivalent raw `podman run --rm`
// printed by the tool's own --dry-run -o podman, alternating runs, and reports medians and
// their ratio, with network none, bridge and gateway (the egress gateway started and stopped
// by the session; the raw line the same container), and on a 50,000-file git repository — where the
// session makes and checks its copy, and the raw line bind-mounts the repository: unchanged
// since the last session (its watcher reads nothing again), with one file rewritten before
// each session (one path read again), and with one file changed (a snapshot every session).
func BenchmarkColdSession(b *testing.B) {
	env := podmantest.Need(b)
	for _, c := range []struct {
		name, network string
		files         int
		// change: before each session a file is rewritten with what it holds (the watcher
		// reads one path again) or, once, changed (every session snapshots it).
		change string
	}{
		{"network=none", "none", 0, ""}, {"network=bridge", "bridge", 0, ""}, {"network=gateway", "gateway", 0, ""},
		{"repo=50k-files", "none", 50_000, ""}, {"repo=50k-files+one-rewritten", "none", 50_000, "rewritten"},
		{"repo=50k-files+one-changed", "none", 50_000, "changed"},
	} {
		b.Run(c.name, func(b *testing.B) {
			extra := ""
			if c.network != "none" {
				extra = "  network: " + c.network + "\n"
			}
			w := newWorkspace(b, env, extra)
			if c.files > 0 {
				fillRepository(b, w.repo, c.files)
			}
			// The raw line bind-mounts the repository (--direct): on a git repository the
			// session itself works on a copy, and that is what is measured against it.
			var direct []string
			if c.files > 0 {
				direct = []string{"--direct"}
			}
			podmanLine := dryRunLine(b, env, w, direct...)
			// With the gateway, the raw line is the same container, its socket's directory
			// made beforehand (and nothing listening in it: the command makes no connection).
			if m := regexp.MustCompile(`source=([^,]+),destination=/run/sourceos-egress`).FindStringSubmatch(podmanLine); m != nil {
				if err := os.MkdirAll(m[1], 0o711); err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(m[1])
			}
			touched := filepath.Join(w.repo, "d000", "f00000.txt")
			if c.change == "changed" {
				appendTo(b, touched, "changed\n")
			}
			tool := func() error {
				if c.change == "rewritten" {
					if err := rewrite(touched); err != nil {
						return err
					}
				}
				cmd := cliProcess(b, env, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%w:\n%s", err, out)
				}
				return nil
			}
			raw := func() error {
				cmd := exec.Command("sh", "-c", podmanLine)
				cmd.Env = append(os.Environ(), env.ConfEnv...)
				return cmd.Run()
			}
			if c.files > 0 && os.Getenv(watchEnv) != "off" {
				// The first session reads the repository in full and starts its watcher,
				// which reads it twice as it starts: measured are the sessions after
				// (SOURCEOSCTL_REPO_WATCH=off measures sessions without it).
				if err := tool(); err != nil {
					b.Fatal(err)
				}
				awaitWatcher(b, w)
			}
			abCompare(b, tool, raw, "ms-podman-run")
		})
	}
}

// rewrite writes the file again with what it holds (a change event, no change).
func rewrite(p string) error {
	body, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, body, 0o644)
}

func appendTo(b *testing.B, p, line string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		b.Fatal(err)
	}
}

// abCompare times the tool against the raw path in alternating pairs (benchtest.Pairs) and
// adds, since process start differs between machines, the median time of `podman --version`
// here. Every pair is logged (go test -bench -v).
func abCompare(b *testing.B, tool, raw func() error, rawMetric string) {
	benchtest.Pairs(b, tool, raw, "sourceosctl", strings.TrimPrefix(rawMetric, "ms-"))
	var version []time.Duration
	for i := 0; i < 7; i++ {
		s := time.Now()
		_ = exec.Command("podman", "--version").Run()
		version = append(version, time.Since(s))
	}
	b.ReportMetric(float64(benchtest.Median(version).Milliseconds()), "ms-podman-version")
}

// fillRepository makes dir a git repository of n committed files, owned like the workspace.
func fillRepository(b *testing.B, dir string, n int) {
	benchtest.Repository(b, dir, n)
	if os.Getuid() == 0 { // as newWorkspace: the session runs as the repository's owner
		_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				_ = os.Lchown(p, 1000, 1000)
			}
			return nil
		})
	}
}

func dryRunLine(b *testing.B, env *podmantest.Env, w *workspace, extra ...string) string {
	f, out, errOut := sessionFactory(b, env, w, nil)
	args := append([]string{"--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "podman"}, extra...)
	if code := run(b, f, append(args, "--", "true")...); code != 0 {
		b.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out.String())
}

// BenchmarkSessionLog: what appending to the session log adds to a session. A cold session
// (`shell -- true`) whose evidence directory has a log, against the same session whose
// evidence directory cannot take one (its `log` is a file: the append is refused at once,
// with a warning, and the bundle is written all the same). The append runs while the
// container is removed; its own cost, and that it does not grow with the log, is
// internal/evidencelog's BenchmarkAppend100k.
func BenchmarkSessionLog(b *testing.B) {
	env := podmantest.Need(b)
	logged, unlogged := newWorkspace(b, env, ""), newWorkspace(b, env, "")
	if err := os.MkdirAll(unlogged.evidenceDir(), 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unlogged.evidenceDir(), "log"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	session := func(w *workspace) func() error {
		return func() error {
			cmd := cliProcess(b, env, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w:\n%s", err, out)
			}
			if notLogged := strings.Contains(string(out), "is not in the session log"); notLogged != (w == unlogged) {
				return fmt.Errorf("the session's log append is not what this benchmark compares:\n%s", out)
			}
			return nil
		}
	}
	benchtest.Pairs(b, session(logged), session(unlogged), "logged", "unlogged")
}
