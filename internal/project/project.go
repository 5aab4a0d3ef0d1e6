// Package project reads a repository's own files to decide how to test it, how to serve it
// and which language stack it needs (sourceosctl agent-machine test, serve, new; seeds 000,
// 001 and 003). It only reads, with size limits, and runs nothing: the commands it returns
// run inside a governed container.
package project

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sourceos/sourceosctl/internal/fileerr"
	"github.com/sourceos/sourceosctl/internal/safeopen"
)

// maxManifest bounds the project files read (package.json, composer.json, test.yaml).
const maxManifest = 1 << 20

// Step is one command to run: a shell command line (sh -c) with a name for reports.
type Step struct {
	Name string `json:"name"`
	Run  string `json:"run"`
}

// FileError is a project file that cannot be used, with where and why.
type FileError = fileerr.Error

// exists says whether dir/name is a regular file (not a directory; a symlink is followed
// only within what os.Stat sees, which is fine for reading a name's presence).
func exists(dir, name string) bool {
	st, err := os.Stat(filepath.Join(dir, name))
	return err == nil && st.Mode().IsRegular()
}

// readManifest reads dir/name, at most maxManifest bytes; ok is false when it is absent. A
// repository's file may be a symbolic link within the repository, never one out of it (a
// cloned repository's link to a host file would send that file's content into the
// container), and never a FIFO or device (reading it would hang).
func readManifest(dir, name string) (data []byte, ok bool, err error) {
	path := filepath.Join(dir, name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, false, &FileError{File: path, Err: fmt.Errorf("cannot be read: %w", err)}
	}
	if root, err := filepath.EvalSymlinks(dir); err != nil || !within(root, real) {
		return nil, false, &FileError{File: path, Err: fmt.Errorf("is a symbolic link out of the repository (to %s); it is not read", real)}
	}
	data, err = safeopen.ReadFile(real, maxManifest)
	var tooLarge *safeopen.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return nil, false, &FileError{File: path, Err: fmt.Errorf("is larger than %d KiB", maxManifest>>10)}
	case err != nil:
		return nil, false, &FileError{File: path, Err: fmt.Errorf("cannot be read: %w", err)}
	}
	return data, true, nil
}

// scripts reads the "scripts" object of a package.json or composer.json: names to whether
// they are set. A file that is not valid JSON is an error naming its line; ok is false when
// the file is absent.
func scripts(dir, name string) (set map[string]bool, ok bool, err error) {
	data, ok, err := readManifest(dir, name)
	if !ok || err != nil {
		return nil, ok, err
	}
	path := filepath.Join(dir, name)
	var doc struct {
		Scripts map[string]json.RawMessage `json:"scripts"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		fe := &FileError{File: path, Err: fmt.Errorf("is not valid JSON: %w", err)}
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			fe.Line = lineAt(data, se.Offset)
		case errors.As(err, &te):
			fe.Line, fe.Err = lineAt(data, te.Offset), fmt.Errorf("%s must be %s, not %s", te.Field, te.Type, te.Value)
		}
		return nil, true, fe
	}
	set = map[string]bool{}
	for k, v := range doc.Scripts {
		// composer allows a list of commands; both are a script that is set.
		set[k] = len(bytes.TrimSpace(v)) > 0 && string(bytes.TrimSpace(v)) != `""` && string(bytes.TrimSpace(v)) != "null"
	}
	return set, true, nil
}

// lineAt is the 1-based line of a byte offset.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// within says whether path is root or under it (both resolved).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
