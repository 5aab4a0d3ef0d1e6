package yamlschema

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a document, located by file, line and field.
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

// Error reports every problem found in one document, sorted by line.
type Error struct {
	File     string
	Problems []*Problem
}

// maxReported bounds the message length for pathological inputs; the count is still exact.
const maxReported = 20

func (e *Error) Error() string {
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

// Add records a problem at a line (0: the whole file) and field.
func (e *Error) Add(line int, field, format string, args ...any) {
	e.Problems = append(e.Problems, &Problem{File: e.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// OrNil returns the error with its problems sorted by line, or nil when there are none.
func (e *Error) OrNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Field < b.Field
	})
	return e
}
