package collect

import "testing"

func TestWithTrailer(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"fix", "fix\n\nSourceos-Session: s\n"},
		{"fix\n", "fix\n\nSourceos-Session: s\n"},
		{"fix\n\nbody text", "fix\n\nbody text\n\nSourceos-Session: s\n"},
		{"fix\n\nSigned-off-by: a <a@x>\n", "fix\n\nSigned-off-by: a <a@x>\nSourceos-Session: s\n"},
		{"fix\n\nSourceos-Session: s\n", "fix\n\nSourceos-Session: s\n"},
		{"Key: looks like a trailer but is the subject", "Key: looks like a trailer but is the subject\n\nSourceos-Session: s\n"},
		// The agent's own trailers of that name (a forged session, any case) are dropped.
		{"fix\n\nSourceos-Session: 20200101t000000.000000z-forged\n", "fix\n\nSourceos-Session: s\n"},
		{"fix\n\nsourceos-session : other\nSigned-off-by: a <a@x>\n", "fix\n\nSigned-off-by: a <a@x>\nSourceos-Session: s\n"},
		{"fix\n\nbody\n\nSourceos-Session: forged\n\nSourceos-Session: s\n", "fix\n\nbody\n\nSourceos-Session: s\n"},
	}
	for _, tt := range tests {
		if got := withTrailer(tt.msg, "s"); got != tt.want {
			t.Errorf("withTrailer(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
