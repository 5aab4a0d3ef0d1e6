package fileerr

import (
	"errors"
	"io/fs"
	"testing"
)

func TestErrorSaysWhereWhatAndTheFix(t *testing.T) {
	for _, c := range []struct {
		err  *Error
		want string
	}{
		{&Error{File: "a.json", Line: 3, Err: errors.New("unknown property \"x\""), Fix: "remove it"}, `a.json:3: unknown property "x"; remove it`},
		{&Error{File: "a.json", Err: errors.New("names no image")}, "a.json: names no image"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	wrapped := &Error{File: "k.yaml", Err: fs.ErrNotExist}
	if !errors.Is(wrapped, fs.ErrNotExist) {
		t.Error("the cause is not reachable through Unwrap")
	}
}
