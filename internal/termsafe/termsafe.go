// Package termsafe makes text that came from a session — file names, file content — safe to
// print on a reviewer's terminal: control characters (escape sequences that move the cursor,
// clear the screen, set the title or rewrite what was printed) and bytes that are not UTF-8
// are shown escaped instead of being interpreted.
package termsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Line is s with every control character (line breaks and tabs included: a name is one
// line) and every byte that is not UTF-8 escaped as \xNN, \n, \t, \r or \u{NNNN}.
func Line(s string) string { return escape(s, false) }

// Text is s with control characters escaped except line feeds and tabs (the shape of a diff
// or a log), and bytes that are not UTF-8 escaped.
func Text(s string) string { return escape(s, true) }

func escape(s string, keepLines bool) string {
	if clean(s, keepLines) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f: // C1 controls: U+009B is a CSI to many terminals
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func clean(s string, keepLines bool) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 || (r < 0x20 && !(keepLines && (r == '\n' || r == '\t'))) || r == 0x7f || r >= 0x80 && r <= 0x9f {
			return false
		}
		i += size
	}
	return true
}
