package termsafe

import "testing"

func TestEscapes(t *testing.T) {
	for _, c := range []struct{ in, line, text string }{
		{"plain/name.go", "plain/name.go", "plain/name.go"},
		{"ff\x1b]0;OWNED\x07\x1b[2J\x1b[32mALL GOOD", `ff\x1b]0;OWNED\x07\x1b[2J\x1b[32mALL GOOD`, `ff\x1b]0;OWNED\x07\x1b[2J\x1b[32mALL GOOD`},
		{"a\nb\tc\rd", `a\nb\tc\rd`, "a\nb\tc\\rd"},
		{"csi\u009b2J", `csi\u009b2J`, `csi\u009b2J`},
		{"bad\xffbyte", `bad\xffbyte`, `bad\xffbyte`},
		{"naïve — ünïcode", "naïve — ünïcode", "naïve — ünïcode"},
		{"del\x7f", `del\x7f`, `del\x7f`},
	} {
		if got := Line(c.in); got != c.line {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.line)
		}
		if got := Text(c.in); got != c.text {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
		}
	}
}
