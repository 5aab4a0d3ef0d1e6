package agentmachine

import (
	"context"
	"errors"
	"testing"
)

// TestAwaitAttachStartsAfterAnAttachThatEnded: an attach that connected and ended at once
// (both channels ready when the caller looks) is connected — the container must still be
// started, whichever case select picks — and its end is kept for the caller; an attach that
// ended without connecting is an error even when it returned none.
func TestAwaitAttachStartsAfterAnAttachThatEnded(t *testing.T) {
	for i := 0; i < 200; i++ { // select picks at random between ready cases
		ready, attached := make(chan bool, 1), make(chan error, 1)
		ready <- true
		attached <- nil
		if err := awaitAttach(context.Background(), ready, attached); err != nil {
			t.Fatalf("run %d: connected attach refused: %v", i, err)
		}
		select {
		case err := <-attached:
			if err != nil {
				t.Fatalf("run %d: the attach's end changed to %v", i, err)
			}
		default:
			t.Fatalf("run %d: the attach's end was lost", i)
		}
	}
	ready, attached := make(chan bool, 1), make(chan error, 1)
	attached <- nil
	if err := awaitAttach(context.Background(), ready, attached); err == nil {
		t.Error("an attach that ended without connecting was taken as connected")
	}
	boom := errors.New("boom")
	attached <- boom
	if err := awaitAttach(context.Background(), ready, attached); !errors.Is(err, boom) {
		t.Errorf("the attach's own error was replaced: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := awaitAttach(ctx, make(chan bool), make(chan error)); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled wait returned %v", err)
	}
}
