package profile

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a profile, located by file, line and field.
type Problem struct {
	File  string `json:"file"`
	Line  int    `json:"line,omitempty"` // 0 when the problem has no single line
	Field string `json:"field,omitempty"`
	Msg   string `json:"message"`
}

func (p *Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError reports every problem found in one profile. It is the only error Load and Parse
// return, so callers can map it to the usage exit code with errors.As.
type LoadError struct {
	File     string
	Problems []*Problem
}

// maxReported bounds the message length for pathological inputs; the count is still exact.
const maxReported = 20

func (e *LoadError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", e.File, len(e.Problems))
	for i, p := range e.Problems {
		if i == maxReported {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Problems)-maxReported)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *LoadError) add(line int, field, format string, args ...any) {
	e.Problems = append(e.Problems, &Problem{File: e.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (e *LoadError) sort() {
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Field < b.Field
	})
}

func (e *LoadError) orNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	e.sort()
	return e
}
