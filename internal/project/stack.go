package project

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// stackRule names a stack's marker files (any one at the repository's root) and the
// extensions of its source files, counted when several stacks match.
type stackRule struct {
	id      string
	markers []string
	exts    []string
}

// stackRules are seed 003's, in its order (ties go to the first).
var stackRules = []stackRule{
	{id: "rust", markers: []string{"Cargo.toml"}, exts: []string{".rs"}},
	{id: "node", markers: []string{"package.json"}, exts: []string{".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx"}},
	{id: "go", markers: []string{"go.mod"}, exts: []string{".go"}},
	{id: "python", markers: []string{"pyproject.toml", "requirements.txt", "setup.py"}, exts: []string{".py"}},
	{id: "ruby", markers: []string{"Gemfile"}, exts: []string{".rb"}},
	{id: "java", markers: []string{"pom.xml", "build.gradle", "build.gradle.kts"}, exts: []string{".java", ".kt"}},
}

// StackIDs are the stacks detection knows.
func StackIDs() []string {
	var out []string
	for _, r := range stackRules {
		out = append(out, r.id)
	}
	return out
}

// Stack is what detection found.
type Stack struct {
	// ID is the stack to use; "" when no marker file was found (the base image).
	ID string `json:"id"`
	// Markers are the marker files that chose it.
	Markers []string `json:"markers,omitempty"`
	// Others are the other stacks whose markers were found, which lost on file counts.
	Others []string `json:"others,omitempty"`
	// Files counts source files per matched stack, when several matched.
	Files map[string]int `json:"files,omitempty"`
}

// Warning says which stacks were passed over, or "".
func (s *Stack) Warning() string {
	if len(s.Others) == 0 {
		return ""
	}
	var parts []string
	for _, o := range s.Others {
		parts = append(parts, o+" ("+strconv.Itoa(s.Files[o])+" files)")
	}
	return "the repository also looks like " + strings.Join(parts, ", ") + "; chose " + s.ID + " (" + strconv.Itoa(s.Files[s.ID]) +
		" files); give --stack to choose another"
}

// skipDirs are not counted: dependencies, build output and version control.
var skipDirs = map[string]bool{".git": true, "node_modules": true, "vendor": true, "target": true, ".venv": true, "venv": true,
	"__pycache__": true, "dist": true, "build": true, ".gradle": true}

// maxCounted bounds the files the count looks at.
const maxCounted = 200_000

// DetectStack decides the repository's stack from the marker files at its root; when several
// stacks match, the one with most source files wins and the others are named.
func DetectStack(dir string) (*Stack, error) {
	var matched []stackRule
	out := &Stack{}
	for _, r := range stackRules {
		var found []string
		for _, m := range r.markers {
			if exists(dir, m) {
				found = append(found, m)
			}
		}
		if len(found) > 0 {
			matched = append(matched, r)
			out.Markers = append(out.Markers, found...)
		}
	}
	switch len(matched) {
	case 0:
		return out, nil
	case 1:
		out.ID = matched[0].id
		return out, nil
	}
	counts, err := countSources(dir, matched)
	if err != nil {
		return nil, err
	}
	best := matched[0].id
	for _, r := range matched[1:] {
		if counts[r.id] > counts[best] {
			best = r.id
		}
	}
	out.ID, out.Files, out.Markers = best, counts, nil
	for _, r := range matched {
		if r.id == best {
			for _, m := range r.markers {
				if exists(dir, m) {
					out.Markers = append(out.Markers, m)
				}
			}
		} else {
			out.Others = append(out.Others, r.id)
		}
	}
	sort.Strings(out.Others)
	return out, nil
}

var errEnough = errors.New("enough files counted")

func countSources(dir string, rules []stackRule) (map[string]int, error) {
	counts := map[string]int{}
	for _, r := range rules {
		counts[r.id] = 0
	}
	seen := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // an unreadable corner is not counted
		}
		if d.IsDir() {
			if path != dir && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if seen++; seen > maxCounted {
			return errEnough
		}
		ext := filepath.Ext(d.Name())
		for _, r := range rules {
			if slices.Contains(r.exts, ext) {
				counts[r.id]++
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	return counts, nil
}
