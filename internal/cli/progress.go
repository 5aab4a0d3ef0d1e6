package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// byteProgress shows a download: a bar on a terminal (mpb, the library Podman's own pulls
// use), a line per tenth elsewhere so logs stay readable.
type byteProgress struct {
	w   io.Writer
	tty bool

	p     *mpb.Progress
	bar   *mpb.Bar
	label string
	total int64
	done  int64
	step  int64

	mu     sync.Mutex
	status string // the latest status line of a pull, shown beside the spinner
}

func newByteProgress(w io.Writer, tty bool) *byteProgress { return &byteProgress{w: w, tty: tty} }

func (b *byteProgress) Start(label string, total int64) {
	b.label, b.total, b.done, b.step = label, total, 0, 0
	if !b.tty {
		fmt.Fprintf(b.w, "%s (%s)\n", label, sizeOrUnknown(total))
		return
	}
	b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	if total < 0 { // a pull: the server reports steps, not bytes
		b.bar = b.p.AddSpinner(0,
			mpb.PrependDecorators(decor.Name(label, decor.WC{C: decor.DindentRight | decor.DextraSpace}), decor.Elapsed(decor.ET_STYLE_GO)),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { b.mu.Lock(); defer b.mu.Unlock(); return b.status })))
		return
	}
	b.bar = b.p.AddBar(max(total, 0),
		mpb.PrependDecorators(decor.Name(label, decor.WC{C: decor.DindentRight | decor.DextraSpace})),
		mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Percentage(decor.WCSyncSpace)))
}

func (b *byteProgress) Add(n int64) {
	b.done += n
	if b.bar != nil {
		b.bar.IncrInt64(n)
		return
	}
	if b.total > 0 {
		if tenth := b.done * 10 / b.total; tenth > b.step {
			b.step = tenth
			fmt.Fprintf(b.w, "  %d%% (%s of %s)\n", tenth*10, sizeOrUnknown(b.done), sizeOrUnknown(b.total))
		}
	}
}

// Status shows a pull's latest step: beside the spinner on a terminal, as a line elsewhere.
func (b *byteProgress) Status(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	if b.bar == nil {
		fmt.Fprintf(b.w, "  %s\n", line)
		return
	}
	b.mu.Lock()
	b.status = line
	b.mu.Unlock()
}

func (b *byteProgress) Done() {
	if b.bar != nil {
		switch {
		case b.total < 0:
			b.bar.SetTotal(-1, true)
		case b.total == 0 || b.done < b.total:
			b.bar.Abort(false)
		}
		b.p.Wait()
		b.bar, b.p = nil, nil
	}
}

func sizeOrUnknown(n int64) string {
	switch {
	case n < 0:
		return "size unknown"
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}
