package evidencereport

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sourceos/sourceosctl/internal/chromiumtest"
	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
)

// evil is what an agent could put in a command or a branch name to act on a page.
const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>`

type fixture struct {
	dir string
	key *evidence.Key
	pub signature.Verifier
	// extra are artifacts every bundle carries besides its session log.
	extra []evidence.Artifact
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := t.TempDir()
	key, err := evidence.LoadOrCreateKey(filepath.Join(base, "k"), filepath.Join(base, "k.pub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := evidence.LoadPublicKey(filepath.Join(base, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: filepath.Join(base, "evidence"), key: key, pub: pub}
}

// session writes and logs the bundle of session i, shaped by edit.
func (f *fixture) session(t testing.TB, i int, edit func(*evidence.Predicate)) string {
	t.Helper()
	id := fmt.Sprintf("20261202t%06dz-%012d", 100000+i, i)
	p := evidence.SamplePredicate(id)
	p.Session.StartedOn = time.Date(2026, 12, 2, 10, 0, i, 0, time.UTC).Format(time.RFC3339)
	if edit != nil {
		edit(p)
	}
	dir, err := evidence.Write(f.dir, id, p, append([]evidence.Artifact{{Name: "session.log", Data: []byte(id + "\n")}}, f.extra...), f.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidencelog.Append(dir, f.key.Signer); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tampered is a directory of five sessions: one with what an agent chose in its command
// and branch, one whose artifact was edited afterwards, one deleted from the directory, one
// with egress denials and drift.
func tampered(t testing.TB) (*fixture, map[string]string) {
	f := newFixture(t)
	names := map[string]string{}
	names["plain"] = f.session(t, 0, nil)
	names["evil"] = f.session(t, 1, func(p *evidence.Predicate) {
		p.Command = []string{"sh", "-c", evil}
		p.Git.Workspace = &evidence.Workspace{Mode: "copy", Branch: "agent/" + evil}
	})
	names["edited"] = f.session(t, 2, nil)
	names["deleted"] = f.session(t, 3, nil)
	names["denied"] = f.session(t, 4, func(p *evidence.Predicate) {
		p.Egress = &evidence.Egress{Attempts: 3, Allowed: 1, Denied: 2, Itemized: 3, Log: "egress.jsonl", Allow: []evidence.EgressRule{}, Deny: []evidence.EgressRule{}, Destinations: []evidence.EgressDestination{}}
		p.Checks = &evidence.Checks{Inspect: "as-planned", Inside: "passed", Drift: "differs", DriftDifferences: []string{"exec session ran privileged"}}
	})
	if err := os.WriteFile(filepath.Join(names["edited"], evidence.ArtifactsDir, "session.log"), []byte("rewritten\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(names["deleted"]); err != nil {
		t.Fatal(err)
	}
	return f, names
}

func TestBuild(t *testing.T) {
	f, names := tampered(t)
	r, err := Build(f.dir, f.pub, "k.pub", time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Summary
	if s.Bundles != 4 || s.Verified != 3 || s.Failed != 1 || s.Log != "problems" || s.LogEntries != 5 || s.Drifted != 1 || s.Denials != 2 {
		t.Errorf("summary %+v", s)
	}
	want := map[string]string{filepath.Base(names["edited"]): "artifacts", filepath.Base(names["deleted"]): "log:deleted"}
	for _, fl := range r.Failures {
		if want[fl.Bundle] == fl.Check {
			delete(want, fl.Bundle)
		}
	}
	if len(want) != 0 {
		t.Errorf("failures %+v do not name %v", r.Failures, want)
	}
	for i, x := range r.Sessions {
		if i > 0 && x.Bundle < r.Sessions[i-1].Bundle {
			t.Errorf("timeline not oldest first: %v", r.Sessions)
		}
		if x.Bundle == filepath.Base(names["edited"]) && (x.Verified || x.Tool == "") {
			t.Errorf("a failed bundle is shown unverified from what it claims: %+v", x)
		}
	}
}

// TestHTMLPage: the page is self-contained, escapes what agents chose, and puts every
// verification failure above the timeline — checked in headless Chromium as rendered, with
// a screenshot.
func TestHTMLPage(t *testing.T) {
	f, names := tampered(t)
	r, err := Build(f.dir, f.pub, "k.pub", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	// No element that runs or fetches anything, no attribute or CSS that names a resource;
	// escaped text (&lt;img …) is not a tag.
	if m := regexp.MustCompile(`(?i)<(script|img|link|iframe|object|embed|svg|base)\b|<[^>]*\b(src|href|action)=|@import|url\(`).FindString(html); m != "" {
		t.Errorf("the page holds %q: not self-contained, or an agent's string is unescaped", m)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	b := chromiumtest.Start(t)
	p := b.Open(t, "file://"+path)
	p.WaitFor(`document.getElementById("timeline") !== null`, 30*time.Second)
	var layout struct {
		FailuresTop, TimelineTop float64
		Failures                 string
		Rows                     int
		Alerted                  bool
	}
	if err := p.Eval(`(() => ({
		FailuresTop: document.getElementById("failures").getBoundingClientRect().top,
		TimelineTop: document.getElementById("timeline").getBoundingClientRect().top,
		Failures: document.getElementById("failures").innerText,
		Rows: document.querySelectorAll("#timeline tbody tr").length,
		Alerted: document.querySelectorAll("script, img").length > 0,
	}))()`, &layout); err != nil {
		t.Fatal(err)
	}
	if layout.FailuresTop >= layout.TimelineTop || layout.Rows != 4 || layout.Alerted {
		t.Errorf("layout %+v", layout)
	}
	for _, n := range []string{filepath.Base(names["edited"]), filepath.Base(names["deleted"])} {
		if !strings.Contains(layout.Failures, n) {
			t.Errorf("the failures box does not name %s:\n%s", n, layout.Failures)
		}
	}
	if text := p.Text(); !strings.Contains(text, evil) {
		t.Errorf("the agent's command is not shown as text:\n%s", text)
	}
	shot := filepath.Join(screenshotDir(t), "evidence-report.png")
	p.Screenshot(shot)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Errorf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}

// screenshotDir is where tests leave screenshots: SOURCEOSCTL_TEST_ARTIFACTS when set (CI
// keeps it), else the test's temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("SOURCEOSCTL_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}
