package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Progress receives byte counts while an archive is downloaded or hashed; total is -1 when
// the size is unknown.
type Progress interface {
	Start(label string, total int64)
	Add(n int64)
	Done()
}

type noProgress struct{}

func (noProgress) Start(string, int64) {}
func (noProgress) Add(int64)           {}
func (noProgress) Done()               {}

// progressWriter counts what passes through it.
type progressWriter struct{ p Progress }

func (w progressWriter) Write(b []byte) (int, error) { w.p.Add(int64(len(b))); return len(b), nil }

// Downloader fetches archives into Dir. A download is written to <sha256>.partial and renamed
// to <sha256>.tar only once complete and verified, so no reader ever sees a half-written or
// unverified archive; an interrupted download is resumed with an HTTP Range request.
type Downloader struct {
	Dir      string
	Client   *http.Client
	Progress Progress
}

// Fetch returns the path of a verified local copy of url, whose SHA-256 must be want.
func (d *Downloader) Fetch(ctx context.Context, url, want string) (string, error) {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return "", fmt.Errorf("download directory: %w", err)
	}
	final := filepath.Join(d.Dir, want+".tar")
	if _, err := os.Stat(final); err == nil {
		if err := d.verify(final, url, want); err == nil {
			return final, nil
		}
		os.Remove(final)
	}
	partial := filepath.Join(d.Dir, want+".partial")
	if err := d.download(ctx, url, partial); err != nil {
		return "", err
	}
	if err := d.verify(partial, url, want); err != nil {
		os.Remove(partial) // wrong bytes are never worth resuming
		return "", err
	}
	if err := os.Rename(partial, final); err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	return final, nil
}

func (d *Downloader) progress() Progress {
	if d.Progress == nil {
		return noProgress{}
	}
	return d.Progress
}

func (d *Downloader) client() *http.Client {
	if d.Client == nil {
		return http.DefaultClient
	}
	return d.Client
}

// download appends to partial from where an earlier attempt stopped.
func (d *Downloader) download(ctx context.Context, url, partial string) error {
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &InputError{Msg: fmt.Sprintf("archive URL %s: %v", url, err), Fix: "check spec.image.sources[].archive"}
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0 && strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)):
		// resuming
	case resp.StatusCode == http.StatusOK:
		have = 0 // the server ignored the range: start over
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("download %s: %w", url, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("download %s: %w", url, err)
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return nil // already complete; the checksum decides
	default:
		return fmt.Errorf("download %s: server answered %s", url, resp.Status)
	}
	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	p := d.progress()
	p.Start("Downloading "+url, total)
	p.Add(have)
	_, err = io.Copy(io.MultiWriter(f, progressWriter{p}), resp.Body)
	p.Done()
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			err = ctx.Err()
		}
		return fmt.Errorf("download %s interrupted after %d bytes (kept for resuming): %w", url, sizeOf(f), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	return nil
}

func sizeOf(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (d *Downloader) verify(path, source, want string) error {
	got, err := FileSHA256(path)
	if err != nil {
		return err
	}
	if got != want {
		return &ChecksumError{Source: source, Want: want, Got: got}
	}
	return nil
}

// FileSHA256 is the hex SHA-256 of a file's content.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func removeQuietly(path string) { _ = os.Remove(path) }
