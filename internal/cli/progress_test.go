package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestByteProgressWithoutATerminalPrintsTenths(t *testing.T) {
	var buf bytes.Buffer
	p := newByteProgress(&buf, false)
	p.Start("Downloading https://example.com/a.tar", 2<<20)
	for i := 0; i < 16; i++ {
		p.Add(128 << 10) // a tenth is crossed on most Adds, never twice on one
	}
	p.Done()
	out := buf.String()
	if !strings.HasPrefix(out, "Downloading https://example.com/a.tar (2.0 MiB)\n") || strings.Count(out, "%") != 10 || !strings.Contains(out, "\n  50% (1.0 MiB of 2.0 MiB)\n") || !strings.Contains(out, "100% (2.0 MiB of 2.0 MiB)") {
		t.Errorf("output:\n%s", out)
	}
	buf.Reset()
	p.Start("Pulling r/x:1", -1)
	p.Status("Copying blob sha256:abc\n")
	p.Status("  ")
	p.Done()
	if got := buf.String(); got != "Pulling r/x:1 (size unknown)\n  Copying blob sha256:abc\n" {
		t.Errorf("pull output = %q", got)
	}
}

func TestByteProgressOnATerminalDrawsABar(t *testing.T) {
	var buf bytes.Buffer
	p := newByteProgress(&buf, true)
	p.Start("Downloading a.tar", 4096)
	p.Add(4096)
	p.Done()
	if out := buf.String(); !strings.Contains(out, "Downloading a.tar") || !strings.Contains(out, "4.0 KiB / 4.0 KiB") {
		t.Errorf("bar output = %q", out)
	}
	buf.Reset()
	p.Start("Pulling r/x:1", -1)
	p.Status("Writing manifest to image destination")
	p.Done()
	if out := buf.String(); !strings.Contains(out, "Pulling r/x:1") {
		t.Errorf("spinner output = %q", out)
	}
}
