// Package textsafe makes text from untrusted sources — what an agent put in a request, a
// branch name, a file name — safe to print on a terminal: control characters (C0, DEL, C1,
// which start escape sequences) and the bidirectional overrides that reorder what a reader
// sees are written as Go escapes, so a record cannot clear a screen, move the cursor, set a
// window title, write the clipboard or disguise itself.
package textsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// String returns s with every control or bidirectional-formatting rune, and every byte that
// is not UTF-8, escaped (\x1b, \u009b, \u202e); anything else is unchanged.
func String(s string) string { return escape(s, false) }

// Text is String for text of many lines — a diff, a log: line feeds and tabs are kept.
func Text(s string) string { return escape(s, true) }

func escape(s string, lines bool) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case lines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unsafe(r):
			if r < 0x80 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			return !strings.ContainsFunc(s, unsafe) && utf8.ValidString(s)
		}
	}
	return true
}

// unsafe reports a rune a terminal acts on or that reorders text.
func unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f: // C0, DEL, C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c: // bidi
		return true
	}
	return false
}
