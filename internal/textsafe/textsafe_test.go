package textsafe

import "testing"

// TestString: what a terminal would act on is escaped; ordinary text, including non-ASCII
// letters, is left alone.
func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"api.anthropic.com":              "api.anthropic.com",
		"bücher.example — ok":            "bücher.example — ok",
		"\u009b2J\u009bH.x.example":      `\u009b2J\u009bH.x.example`,
		"\x1b]52;c;aGk=\x07":             `\x1b]52;c;aGk=\x07`,
		"evil\u202egnp.exe":              `evil\u202egnp.exe`,
		"tab\there\nnew":                 `tab\x09here\x0anew`,
		"bad\xffutf8":                    `bad\xffutf8`,
		"\u009d0;title\u009c after":      `\u009d0;title\u009c after`,
		"\u2066isolate\u2069 and \u200f": `\u2066isolate\u2069 and \u200f`,
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestText: a diff keeps its lines and tabs; everything String escapes is escaped.
func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"+line\n-\tindented\n":            "+line\n-\tindented\n",
		"+\x1b[1A\x1b[2K hidden\r\n":      "+\\x1b[1A\\x1b[2K hidden\\x0d\n",
		"+ff\x1b]0;OWNED\x07\u202e\xff\n": "+ff\\x1b]0;OWNED\\x07\\u202e\\xff\n",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzString: the result never holds a rune a terminal acts on, and clean text is unchanged.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "a", "\x1b[2J", "\u009b", "\u202e", "\xff", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		for _, r := range out {
			if unsafe(r) || r == 0xfffd && !containsReplacement(s) {
				t.Fatalf("String(%q) = %q still holds %U", s, out, r)
			}
		}
		if clean(s) && out != s {
			t.Fatalf("clean %q changed to %q", s, out)
		}
	})
}

func containsReplacement(s string) bool {
	for _, r := range s {
		if r == 0xfffd {
			return true
		}
	}
	return false
}
