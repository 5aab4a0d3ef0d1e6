package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sourceos/sourceosctl/internal/image"
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

// buildLog shows a build as one progress line per stage and keeps everything the stages'
// programs print (debootstrap, apt, npm: hundreds of lines) in a file named at the end; a
// failed build prints the file's tail. With -v the output streams as it comes instead.
type buildLog struct {
	io   *IOStreams
	path string
	file *os.File
	now  func() time.Time
}

// buildLogTail is how many lines of the log a failed build shows.
const buildLogTail = 20

func newBuildLog(b *image.Builder, opts *imageBuildOptions, dir string, start time.Time) (*buildLog, error) {
	l := &buildLog{io: opts.IO, now: opts.Now}
	if opts.Verbose {
		return l, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("build log directory: %w", err)
	}
	l.path = filepath.Join(dir, "build-"+start.UTC().Format("20060102T150405Z")+".log")
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	l.file = f
	b.Log, b.Stage = f, l.stage
	return l, nil
}

// stage shows one stage: a live line with the elapsed time on a terminal, a line as it
// begins and one as it ends elsewhere. The log file gets a header per stage.
func (l *buildLog) stage(label string) func(error) {
	fmt.Fprintf(l.file, "==> %s\n", label)
	start := l.now()
	if !l.io.ErrTTY {
		fmt.Fprintf(l.io.ErrOut, "==> %s\n", label)
		return func(err error) {
			took := l.now().Sub(start).Round(time.Second)
			if err != nil {
				fmt.Fprintf(l.io.ErrOut, "    failed after %s\n", took)
				return
			}
			fmt.Fprintf(l.io.ErrOut, "    done in %s\n", took)
		}
	}
	p := mpb.New(mpb.WithOutput(l.io.ErrOut), mpb.WithWidth(1), mpb.WithAutoRefresh())
	bar := p.AddSpinner(0, mpb.PrependDecorators(decor.Name("==> "+label, decor.WC{C: decor.DindentRight | decor.DextraSpace}), decor.Elapsed(decor.ET_STYLE_GO)))
	return func(err error) {
		if err != nil {
			bar.Abort(false)
		} else {
			bar.SetTotal(-1, true)
		}
		p.Wait()
	}
}

// close ends the log and says where it is; after a failure it prints the log's tail first.
func (l *buildLog) close(buildErr error) error {
	if l.file == nil {
		return nil
	}
	if err := l.file.Close(); err != nil {
		return fmt.Errorf("build log %s: %w", l.path, err)
	}
	if buildErr != nil {
		if tail := lastLines(l.path, buildLogTail); tail != "" {
			fmt.Fprintf(l.io.ErrOut, "--- the last lines of the build log ---\n%s\n---\n", tail)
		}
		fmt.Fprintf(l.io.ErrOut, "full build log: %s\n", l.path)
		return nil
	}
	fmt.Fprintf(l.io.ErrOut, "build log: %s\n", l.path)
	return nil
}

// lastLines returns a file's last n lines ("" when it cannot be read).
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
