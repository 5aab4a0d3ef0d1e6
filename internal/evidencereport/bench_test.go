package evidencereport

import (
	"fmt"
	"testing"
	"time"

	"github.com/sourceos/sourceosctl/internal/benchtest"
	"github.com/sourceos/sourceosctl/internal/evidence"
)

// BenchmarkReport1000: `evidence report` of 1,000 sessions' bundles (each with a 200 KiB
// inspect artifact, as real ones carry) and their session log, against the direct path:
// `evidence verify` of each bundle in turn, in the same process.
func BenchmarkReport1000(b *testing.B) {
	f := newFixture(b)
	inspect := make([]byte, 200<<10)
	for i := range inspect {
		inspect[i] = byte('a' + i%26)
	}
	f.extra = []evidence.Artifact{{Name: "container-inspect.json", Data: inspect}}
	var dirs []string
	for i := 0; i < 1000; i++ {
		dirs = append(dirs, f.session(b, i, nil))
	}
	report := func() error {
		r, err := Build(f.dir, f.pub, "k.pub", time.Now())
		if err == nil && (len(r.Failures) != 0 || r.Summary.Verified != 1000) {
			err = fmt.Errorf("report: %+v", r.Summary)
		}
		return err
	}
	verifyEach := func() error {
		for _, d := range dirs {
			if _, err := evidence.Verify(d, f.pub); err != nil {
				return err
			}
		}
		return nil
	}
	benchtest.Pairs(b, report, verifyEach, "report", "verify-each")
}
