package evidence

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
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
