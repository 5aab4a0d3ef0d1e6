package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// BenchmarkColdSession compares `sourceosctl agent-machine shell --repo R -- true` (the whole
// process: profile, policy, plan, image check, create, inspect-and-verify, attach, start,
// wait, remove, git state, signing the evidence) with the equivalent raw `podman run --rm`
// printed by the tool's own --dry-run -o podman, alternating runs, and reports medians and
// their ratio, with network none and bridge.
func BenchmarkColdSession(b *testing.B) {
	env := podmantest.Need(b)
	for _, c := range []struct {
		name, network string
		files         int
	}{
		{"network=none", "none", 0}, {"network=bridge", "bridge", 0}, {"repo=50k-files", "none", 50_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			extra := ""
			if c.network == "bridge" {
				extra = "  network: bridge\n"
			}
			w := newWorkspace(b, env, extra)
			if c.files > 0 {
				fillRepository(b, w.repo, c.files)
			}
			podmanLine := dryRunLine(b, env, w)
			tool := func() error {
				cmd := cliProcess(b, env, w, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "true")
				return cmd.Run()
			}
			raw := func() error {
				cmd := exec.Command("sh", "-c", podmanLine)
				cmd.Env = append(os.Environ(), env.ConfEnv...)
				return cmd.Run()
			}
			abCompare(b, tool, raw, "ms-podman-run")
		})
	}
}

// abCompare warms up both paths once (image layers, runtime binaries in the page cache),
// then times 7 alternating pairs per iteration and reports both medians, their ratio, the
// median of the pairs' own ratios and, since process start differs between machines, the
// median time of `podman --version` here. Every pair is logged (go test -bench -v).
func abCompare(b *testing.B, tool, raw func() error, rawMetric string) {
	if err := tool(); err != nil {
		b.Fatal(err)
	}
	if err := raw(); err != nil {
		b.Fatal(err)
	}
	var tTool, tRaw []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for pair := 0; pair < 7; pair++ {
			s := time.Now()
			if err := tool(); err != nil {
				b.Fatal(err)
			}
			tTool = append(tTool, time.Since(s))
			s = time.Now()
			if err := raw(); err != nil {
				b.Fatal(err)
			}
			tRaw = append(tRaw, time.Since(s))
		}
	}
	b.StopTimer()
	var pairs []string
	var ratios []time.Duration // pair ratios, scaled by 1000 to reuse medianOf
	for i := range tTool {
		pairs = append(pairs, fmt.Sprintf("%d/%d", tTool[i].Milliseconds(), tRaw[i].Milliseconds()))
		ratios = append(ratios, time.Duration(1000*float64(tTool[i])/float64(tRaw[i])))
	}
	var version []time.Duration
	for i := 0; i < 7; i++ {
		s := time.Now()
		_ = exec.Command("podman", "--version").Run()
		version = append(version, time.Since(s))
	}
	b.Logf("pairs (sourceosctl/%s, ms): %s; podman --version %d ms", rawMetric, strings.Join(pairs, " "), medianOf(version).Milliseconds())
	b.ReportMetric(float64(medianOf(tTool).Milliseconds()), "ms-sourceosctl")
	b.ReportMetric(float64(medianOf(tRaw).Milliseconds()), rawMetric)
	b.ReportMetric(float64(medianOf(tTool))/float64(medianOf(tRaw)), "ratio")
	b.ReportMetric(float64(medianOf(ratios))/1000, "pair-ratio")
	b.ReportMetric(float64(medianOf(version).Milliseconds()), "ms-podman-version")
}

// fillRepository makes dir a git repository of n committed files, owned like the workspace.
func fillRepository(b *testing.B, dir string, n int) {
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/500))
		if i%500 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "files"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir, "-c", "gc.auto=0", "-c", "safe.directory=*"}, args...)...).CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	if os.Getuid() == 0 { // as newWorkspace: the session runs as the repository's owner
		_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				_ = os.Lchown(p, 1000, 1000)
			}
			return nil
		})
	}
}

func medianOf(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func dryRunLine(b *testing.B, env *podmantest.Env, w *workspace) string {
	f, out, errOut := sessionFactory(b, env, w, nil)
	if code := run(b, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "podman", "--", "true"); code != 0 {
		b.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out.String())
}
