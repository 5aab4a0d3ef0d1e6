package cli

import (
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkColdSession compares `sourceosctl agent-machine shell --repo R -- true` (the whole
// process: profile, policy, plan, image check, create, inspect-and-verify, attach, start,
// wait, remove, git state, signing the evidence) with the equivalent raw `podman run --rm`
// printed by the tool's own --dry-run -o podman, alternating runs, and reports medians and
// their ratio, with network none and bridge.
func BenchmarkColdSession(b *testing.B) {
	if env == nil {
		b.Skip("podman is not installed")
	}
	for _, network := range []string{"none", "bridge"} {
		b.Run("network="+network, func(b *testing.B) {
			extra := ""
			if network == "bridge" {
				extra = "  network: bridge\n"
			}
			w := newWorkspace(b, env, extra)
			podmanLine := dryRunLine(b, w)
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
// then times 7 alternating pairs per iteration and reports both medians and their ratio.
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
	b.ReportMetric(float64(medianOf(tTool).Milliseconds()), "ms-sourceosctl")
	b.ReportMetric(float64(medianOf(tRaw).Milliseconds()), rawMetric)
	b.ReportMetric(float64(medianOf(tTool))/float64(medianOf(tRaw)), "ratio")
}

func medianOf(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func dryRunLine(b *testing.B, w *workspace) string {
	f, out, errOut := sessionFactory(b, env, w, nil)
	if code := run(b, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--dry-run", "-o", "podman", "--", "true"); code != 0 {
		b.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out.String())
}
