// Package repowatch keeps a repository's scan (repocopy.Scan: HEAD, the status with its
// ignored paths, the configuration) up to date in a background process that watches the
// repository, so that a session's copy reads again only the paths that changed since the
// last one instead of every file: on a 50,000-file repository git's status costs ~0.1
// CPU-second, most of what a copy added to a session's start (BENCHMARKS.md).
//
// The watcher (Server) is started by a session that found none, after it ends, and runs as
// the session's user; git runs in the repository as its owner, as every read of it does. It
// watches, with inotify:
//
//   - every directory of the work tree but .git directories and the directories an ignore
//     rule matches themselves (nothing below those is ever shown or copied). A change there
//     is a path to read again, widened to its topmost directory without tracked files —
//     where git's status shows an untracked or ignored directory as one entry;
//   - the repository's own records that decide the status (HEAD and its branch, the index,
//     the configuration, packed refs, info/) and every configuration and excludes file git
//     reads (the user's, the system's, included ones). A change there ends the watcher, as
//     do a changed .gitignore, a renamed directory, an overflowing event queue, too many
//     directories or changes, or a day without a question: the next session then reads the
//     repository in full and starts a new one. What raises no event it would see — a rule
//     or configuration file edited through a hard link, a directory on its way replaced, the
//     repository's own directory renamed away, a file system mounted inside — is compared
//     at every answer (identity, size and times; the mount table), and ends it too.
//
// A work tree file changed through a hard link from outside it, or through a shared memory
// mapping, raises no event: its change is not seen until something else changes it — what
// the copy shows is the live file all the same (the overlay's lower layer is the work tree),
// only the snapshot of uncommitted changes misses it. A new name always raises one, so an
// ignored file cannot appear unhidden.
//
// Sessions ask over a Unix socket in a private directory (Dir) and check that the watcher
// is their own user; the answer is the scan itself.
package repowatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/fileowner"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// ErrNoWatcher says no watcher runs for the repository (or it could not be reached).
var ErrNoWatcher = errors.New("no watcher runs for the repository")

// Answer is a watcher's reply: the scan, kept up to date, and the paths it read again for it.
type Answer struct {
	Scan    repocopy.Scan `json:"scan"`
	Changed []string      `json:"changed,omitempty"`
	Error   string        `json:"error,omitempty"`
}

type request struct {
	Repo string `json:"repo"`
}

// queryTimeout bounds a question: the watcher reads at most maxChanges paths again.
const queryTimeout = 30 * time.Second

// Dir is the private directory of this user's watchers' sockets, made when missing:
// <temporary directory>/sourceosctl-<uid>, owned by the user and closed to others (a Unix
// socket's path must be short; the state directory's may not be).
func Dir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("sourceosctl-%d", os.Geteuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if err := private(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// SocketPath is the socket of the watcher of repo for the sessions of the state directory
// state whose environment is env, in dir. The variables git reads its configuration by
// (HOME, XDG_CONFIG_HOME, GIT_*) are part of it: a session with others gets a watcher of its
// own, whose git reads what the session's would.
func SocketPath(dir, state, repo string, env []string) string {
	vars := map[string]string{}
	for _, kv := range env { // the last of a name counts, as for a process
		if k, v, ok := strings.Cut(kv, "="); ok && (k == "HOME" || k == "XDG_CONFIG_HOME" || strings.HasPrefix(k, "GIT_")) {
			vars[k] = v
		}
	}
	key := []string{state, repo}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		key = append(key, k+"="+vars[k])
	}
	sum := sha256.Sum256([]byte(strings.Join(key, "\x00")))
	return filepath.Join(dir, hex.EncodeToString(sum[:10])+".sock")
}

// Query asks the watcher at socket for the scan of repo. The error wraps ErrNoWatcher when
// none answers there.
func Query(ctx context.Context, socket, repo string) (Answer, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrNoWatcher, err)
	}
	defer conn.Close()
	if err := peerIsThisUser(conn); err != nil {
		return Answer{}, err
	}
	deadline := time.Now().Add(queryTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if err := json.NewEncoder(conn).Encode(request{Repo: repo}); err != nil {
		return Answer{}, fmt.Errorf("ask the repository's watcher: %w", err)
	}
	var a Answer
	if err := json.NewDecoder(conn).Decode(&a); err != nil {
		return Answer{}, fmt.Errorf("read the repository's watcher's answer: %w", err)
	}
	if a.Error != "" {
		return a, fmt.Errorf("the repository's watcher: %s", a.Error)
	}
	return a, nil
}

// Running are the repositories whose watchers answer in dir (read from their logs' last
// "watching" lines).
func Running(dir string) ([]string, error) {
	socks, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return nil, err
	}
	var repos []string
	for _, s := range socks {
		conn, err := net.DialTimeout("unix", s, time.Second)
		if err != nil {
			continue // stale: its watcher ended without removing it
		}
		conn.Close()
		log, _ := os.ReadFile(s + ".log")
		lines := strings.Split(string(log), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if _, rest, ok := strings.Cut(lines[i], " watching "); ok {
				repo, _, _ := strings.Cut(rest, ": ")
				repos = append(repos, repo)
				break
			}
		}
	}
	return repos, nil
}

// private checks that dir is a directory of this user's that no one else can enter.
func private(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	uid, _, ok := fileowner.FromInfo(st)
	if !st.IsDir() || !ok || uid != os.Geteuid() || st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is not a private directory of this user's (mode %v): remove it", dir, st.Mode())
	}
	return nil
}
