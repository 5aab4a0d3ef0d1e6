package cause

import (
	"errors"
	"fmt"
	"testing"
)

func TestRoot(t *testing.T) {
	inner := errors.New("connection refused")
	if got := Root(fmt.Errorf("connect: %w", fmt.Errorf("dial: %w", inner))); got != inner {
		t.Fatalf("Root = %v, want the innermost error", got)
	}
	if got := Root(inner); got != inner {
		t.Fatalf("Root of an unwrapped error = %v", got)
	}
}
