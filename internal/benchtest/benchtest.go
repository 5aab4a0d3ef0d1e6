// Package benchtest holds what the benchmarks share: a committed git repository of many
// files, and timing sourceosctl against the direct path in alternating pairs.
package benchtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Repository fills dir with n small files (500 to a directory) and commits them, so the
// tree is a git repository of n tracked files with a clean status.
func Repository(tb testing.TB, dir string, n int) {
	tb.Helper()
	if err := fill(dir, n); err != nil {
		tb.Fatal(err)
	}
}

func fill(dir string, n int) error {
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/500))
		if i%500 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", fmt.Sprintf("%d files", n)}} {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "safe.directory=*"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	return nil
}

// Result is a paired comparison's timings.
type Result struct {
	Ours, Theirs []time.Duration
}

// Pairs warms both paths up once, then times 7 alternating pairs (ours first) per
// iteration, logs every pair and reports both medians (as ms-OURS and ms-THEIRS), their
// ratio, and the median of the pairs' own ratios.
func Pairs(b *testing.B, ours, theirs func() error, oursName, theirsName string) Result {
	b.Helper()
	if err := ours(); err != nil {
		b.Fatal(err)
	}
	if err := theirs(); err != nil {
		b.Fatal(err)
	}
	var r Result
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for p := 0; p < 7; p++ {
			s := time.Now()
			if err := ours(); err != nil {
				b.Fatal(err)
			}
			r.Ours = append(r.Ours, time.Since(s))
			s = time.Now()
			if err := theirs(); err != nil {
				b.Fatal(err)
			}
			r.Theirs = append(r.Theirs, time.Since(s))
		}
	}
	b.StopTimer()
	var logged []string
	var ratios []float64
	for i := range r.Ours {
		logged = append(logged, fmt.Sprintf("%s/%s", ms(r.Ours[i]), ms(r.Theirs[i])))
		ratios = append(ratios, float64(r.Ours[i])/float64(r.Theirs[i]))
	}
	b.Logf("pairs (%s/%s, ms): %s", oursName, theirsName, strings.Join(logged, " "))
	b.ReportMetric(float64(Median(r.Ours))/1e6, "ms-"+oursName)
	b.ReportMetric(float64(Median(r.Theirs))/1e6, "ms-"+theirsName)
	b.ReportMetric(float64(Median(r.Ours))/float64(Median(r.Theirs)), "ratio")
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "pair-ratio")
	return r
}

// ms is d in milliseconds, with a decimal below 100 ms.
func ms(d time.Duration) string {
	if d < 100*time.Millisecond {
		return fmt.Sprintf("%.1f", float64(d)/1e6)
	}
	return fmt.Sprint(d.Milliseconds())
}

// Median is the middle of d (the upper one of an even count).
func Median(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
