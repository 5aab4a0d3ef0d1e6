package evidence

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/sigstore/sigstore/pkg/signature"
)

// ReadUnverified parses a bundle's statement without checking anything: for humans
// browsing evidence, always labelled UNVERIFIED.
func ReadUnverified(dir string) (*Statement, error) {
	raw, err := os.ReadFile(filepath.Join(dir, EnvelopeFile))
	if err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, &VerifyError{CheckEnvelope, err.Error()}
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, &VerifyError{CheckEnvelope, err.Error()}
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil || st.Predicate == nil {
		return nil, &VerifyError{CheckStatement, "the payload is not a session statement"}
	}
	return &st, nil
}

// IsBundle reports whether dir holds a bundle.
func IsBundle(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, BundleFile))
	return err == nil
}

// List returns the bundle directories directly inside dir, newest first (names sort by
// time).
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() && e.Name()[0] != '.' && IsBundle(p) {
			out = append(out, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}

// Inspected is one bundle as inspect reports it: verified with a key, or only read.
type Inspected struct {
	Dir       string     `json:"dir"`
	Verified  bool       `json:"verified"`
	Error     string     `json:"error,omitempty"`
	Subjects  []Subject  `json:"subjects,omitempty"`
	Predicate *Predicate `json:"predicate,omitempty"`
}

// Inspect reads the bundle at path, or every bundle directly inside the directory path,
// newest first; single says path was one bundle. With a verifier each bundle is verified
// first (a failure is the item's Error); without one each is read UNVERIFIED.
func Inspect(path string, v signature.Verifier) (items []Inspected, single bool, err error) {
	dirs := []string{path}
	single = IsBundle(path)
	if !single {
		if dirs, err = List(path); err != nil {
			return nil, false, fmt.Errorf("%s: %v", path, err)
		}
	}
	items = []Inspected{}
	for _, d := range dirs {
		items = append(items, inspectOne(d, v))
	}
	return items, single, nil
}

func inspectOne(dir string, v signature.Verifier) Inspected {
	if v != nil {
		got, err := Verify(dir, v)
		if err != nil {
			return Inspected{Dir: dir, Error: err.Error()}
		}
		return Inspected{Dir: dir, Verified: true, Subjects: got.Statement.Subject, Predicate: got.Statement.Predicate}
	}
	st, err := ReadUnverified(dir)
	if err != nil {
		return Inspected{Dir: dir, Error: err.Error()}
	}
	return Inspected{Dir: dir, Subjects: st.Subject, Predicate: st.Predicate}
}
