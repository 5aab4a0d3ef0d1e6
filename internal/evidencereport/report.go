// Package evidencereport builds a report people can read from an evidence directory: every
// bundle verified with the evidence key, the session log checked, then a timeline of the
// sessions — as JSON for scripts (schemas/agent-machine-report.schema.json) or as one
// self-contained HTML page with every verification failure at the top.
package evidencereport

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/evidencelog"
)

// Report is what the report shows, in the order it shows it.
type Report struct {
	Generated string    `json:"generated"`
	Dir       string    `json:"dir"`
	Key       string    `json:"key"`
	Summary   Summary   `json:"summary"`
	Failures  []Failure `json:"failures"`
	Sessions  []Session `json:"sessions"`
}

// Summary counts the bundles and says how the log fared.
type Summary struct {
	Bundles  int `json:"bundles"`
	Verified int `json:"verified"`
	Failed   int `json:"failed"`
	// Log is "verified", "problems" or "absent" (no session log in the directory).
	Log string `json:"log"`
	// LogEntries is the size of the log's latest signed checkpoint.
	LogEntries uint64 `json:"logEntries"`
	Drifted    int    `json:"drifted"`
	Denials    int    `json:"denials"`
}

// Failure is one verification failure: a bundle's first failed check, or a problem of the
// session log.
type Failure struct {
	Bundle string `json:"bundle,omitempty"`
	// Check is the bundle check that failed (evidence.Check*), or "log:" and the log
	// problem's kind.
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// Session is one bundle on the timeline. A bundle that did not verify is shown from what it
// claims, marked unverified.
type Session struct {
	Bundle    string   `json:"bundle"`
	Verified  bool     `json:"verified"`
	ID        string   `json:"id,omitempty"`
	Started   string   `json:"started,omitempty"`
	Finished  string   `json:"finished,omitempty"`
	Outcome   string   `json:"outcome,omitempty"`
	ExitCode  *int     `json:"exitCode,omitempty"`
	Tool      string   `json:"tool,omitempty"`
	Command   []string `json:"command,omitempty"`
	Repo      string   `json:"repo,omitempty"`
	Branch    string   `json:"branch,omitempty"`
	Image     string   `json:"image,omitempty"`
	Network   string   `json:"network,omitempty"`
	Denied    int      `json:"denied"`
	Secrets   []string `json:"secrets"`
	Drift     string   `json:"drift,omitempty"`
	Workspace string   `json:"workspace,omitempty"` // the workspace and what the session did to it
}

// Build verifies every bundle directly in dir with v and checks the session log. keyName is
// how the report names the key (its path).
func Build(dir string, v signature.Verifier, keyName string, now time.Time) (*Report, error) {
	bundles, err := evidence.List(dir)
	if err != nil {
		return nil, err
	}
	sort.Strings(bundles) // oldest first: names start with the session's time
	r := &Report{Generated: now.UTC().Format(time.RFC3339), Dir: dir, Key: keyName, Failures: []Failure{}, Sessions: make([]Session, len(bundles))}
	res, logErr := evidencelog.Verify(dir, v, evidencelog.VerifyOptions{})
	// Each bundle verifies with the key that signed it: after a rotation, the log ties the
	// earlier keys to v.
	keyOf := func(bundle string) signature.Verifier {
		if logErr == nil {
			if k := res.SignerOf(filepath.Base(bundle)); k != nil {
				return k
			}
		}
		return v
	}
	failed := make([]*Failure, len(bundles))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r.Sessions[i], failed[i] = session(bundles[i], keyOf(bundles[i]))
			}
		}()
	}
	for i := range bundles {
		next <- i
	}
	close(next)
	wg.Wait()

	r.Summary.Bundles = len(bundles)
	r.Summary.Log = "absent"
	var noLog *evidencelog.NoLogError
	switch {
	case errors.As(logErr, &noLog):
	case logErr != nil:
		r.Failures = append(r.Failures, Failure{Check: "log", Detail: logErr.Error()})
		r.Summary.Log = "problems"
	default:
		r.Summary.Log, r.Summary.LogEntries = "verified", res.Size
		if !res.OK() {
			r.Summary.Log = "problems"
		}
		for _, p := range res.Problems {
			detail := p.Detail
			if p.Index != nil {
				detail = fmt.Sprintf("entry %d: %s", *p.Index, p.Detail)
			}
			r.Failures = append(r.Failures, Failure{Bundle: p.Bundle, Check: "log:" + p.Kind, Detail: detail})
		}
	}
	for i, f := range failed {
		s := r.Sessions[i]
		switch {
		case f != nil:
			r.Failures = append(r.Failures, *f)
			r.Summary.Failed++
		default:
			r.Summary.Verified++
		}
		if s.Drift == "differs" {
			r.Summary.Drifted++
		}
		r.Summary.Denials += s.Denied
	}
	return r, nil
}

// session verifies one bundle and describes it; a failure is returned beside what the bundle
// claims.
func session(dir string, v signature.Verifier) (Session, *Failure) {
	s := Session{Bundle: filepath.Base(dir), Secrets: []string{}}
	got, err := evidence.Verify(dir, v)
	if err != nil {
		f := &Failure{Bundle: s.Bundle, Check: "bundle", Detail: err.Error()}
		var ve *evidence.VerifyError
		if errors.As(err, &ve) {
			f.Check, f.Detail = ve.Check, ve.Detail
		}
		if st, rerr := evidence.ReadUnverified(dir); rerr == nil {
			describe(&s, st.Predicate)
		}
		return s, f
	}
	s.Verified = true
	describe(&s, got.Statement.Predicate)
	return s, nil
}

func describe(s *Session, p *evidence.Predicate) {
	s.ID, s.Started, s.Finished, s.Outcome, s.ExitCode = p.Session.ID, p.Session.StartedOn, p.Session.FinishedOn, p.Session.Outcome, p.Session.ExitCode
	s.Tool, s.Command, s.Repo, s.Image, s.Network = p.Tool.Name, p.Command, p.Repo.Path, p.Image.Ref, p.Network
	if w := p.Git.Workspace; w != nil {
		s.Branch = w.Branch
	}
	if e := p.Egress; e != nil {
		s.Denied = e.Denied
	}
	s.Secrets = append(s.Secrets, p.Secrets...)
	if c := p.Checks; c != nil {
		s.Drift = c.Drift
	}
	if w := p.Session.Workspace; w != nil {
		s.Workspace = w.Name + " (" + w.Action + ")"
	}
}
