package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// archiveServer serves content with Range support (http.ServeContent) and records each
// request's Range header. cutAfter > 0 makes the first request die after that many bytes.
type archiveServer struct {
	content  []byte
	cutAfter int
	mu       sync.Mutex
	ranges   []string
}

func (s *archiveServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	first := len(s.ranges) == 1
	s.mu.Unlock()
	if first && s.cutAfter > 0 {
		w.Header().Set("Content-Length", "999999")
		w.WriteHeader(http.StatusOK)
		w.Write(s.content[:s.cutAfter])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}
	http.ServeContent(w, r, "a.tar", time.Time{}, bytes.NewReader(s.content))
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestDownloaderVerifiesAndNeverExposesPartialFiles(t *testing.T) {
	content := bytes.Repeat([]byte("layer-bytes "), 50000)
	srv := &archiveServer{content: content, cutAfter: 100000}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	dir := t.TempDir()
	d := &Downloader{Dir: dir, Client: ts.Client()}

	_, err := d.Fetch(context.Background(), ts.URL+"/a.tar", sum(content))
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("first download should be cut: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, sum(content)+".tar")); !os.IsNotExist(err) {
		t.Fatal("an interrupted download left a file under its final name")
	}
	if fi, err := os.Stat(filepath.Join(dir, sum(content)+".partial")); err != nil || fi.Size() != 100000 {
		t.Fatalf("partial = %v %v, want the first 100000 bytes kept for resuming", fi, err)
	}

	path, err := d.Fetch(context.Background(), ts.URL+"/a.tar", sum(content))
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.ranges[1]; got != "bytes=100000-" {
		t.Errorf("second request Range = %q, want a resume from byte 100000", got)
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, content) {
		t.Error("the resumed file differs from the served content")
	}
	if _, err := os.Stat(filepath.Join(dir, sum(content)+".partial")); !os.IsNotExist(err) {
		t.Error("the partial file is still there after success")
	}
}

func TestDownloaderRefusesWrongChecksumAndDiscardsTheBytes(t *testing.T) {
	content := []byte("not the archive you are looking for")
	ts := httptest.NewServer(&archiveServer{content: content})
	defer ts.Close()
	dir := t.TempDir()
	want := strings.Repeat("a", 64)
	_, err := (&Downloader{Dir: dir, Client: ts.Client()}).Fetch(context.Background(), ts.URL+"/a.tar", want)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Want != want || ce.Got != sum(content) {
		t.Fatalf("err = %v, want a ChecksumError naming both digests", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left after a checksum mismatch: %v", entries)
	}
}

func TestDownloaderRestartsWhenTheServerIgnoresRanges(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 5000)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(content) }))
	defer ts.Close()
	dir := t.TempDir()
	// A stale partial from an earlier attempt, with wrong bytes.
	os.WriteFile(filepath.Join(dir, sum(content)+".partial"), []byte("garbage"), 0o600)
	path, err := (&Downloader{Dir: dir, Client: ts.Client()}).Fetch(context.Background(), ts.URL, sum(content))
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, content) {
		t.Error("a 200 answer to a Range request must replace the partial file, not extend it")
	}
}

func TestDownloaderReportsHTTPErrors(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	defer ts.Close()
	_, err := (&Downloader{Dir: t.TempDir(), Client: ts.Client()}).Fetch(context.Background(), ts.URL+"/gone.tar", strings.Repeat("b", 64))
	if err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Fatalf("err = %v, want the server's status", err)
	}
}
