package cli

import (
	"fmt"
	"os"
	"os/exec"
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
	for _, network := range []string{"none", "bridge"} {
		b.Run("network="+network, func(b *testing.B) {
			extra := ""
			if network == "bridge" {
				extra = "  network: bridge\n"
			}
			w := newWorkspace(b, env, extra)
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
