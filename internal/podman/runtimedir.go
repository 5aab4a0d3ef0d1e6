package podman

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
)

// RootfulSocket is where a rootful Podman service listens.
const RootfulSocket = "/run/podman/podman.sock"

// RuntimeEnv is what a rootless Podman's runtime directory depends on: the user, the
// environment and the file system. It is only read: resolving never creates anything.
type RuntimeEnv struct {
	UID    int
	Getenv func(string) string
	// Stat and EvalSymlinks are the file system; Owner reports a file's owner uid.
	Stat         func(string) (fs.FileInfo, error)
	EvalSymlinks func(string) (string, error)
	Owner        func(fs.FileInfo) (uid int, ok bool)
	// TempDir is os.TempDir(): $TMPDIR, else /tmp.
	TempDir string
}

// RuntimeDir is where a rootless Podman keeps its runtime state and its API socket, and why.
type RuntimeDir struct {
	Path string `json:"path"`
	Why  string `json:"why"`
	// Absent is true when the directory does not exist yet: Podman creates it on first use.
	Absent bool `json:"absent,omitempty"`
}

// Socket is the rootless API socket in the runtime directory.
func (d RuntimeDir) Socket() string { return filepath.Join(d.Path, "podman", "podman.sock") }

// RuntimeDirError says Podman itself cannot work with the environment as it is.
type RuntimeDirError struct {
	Detail string
	Fix    string
}

func (e *RuntimeDirError) Error() string { return e.Detail }

// Hint is the command that fixes the environment.
func (e *RuntimeDirError) Hint() string { return e.Fix }

// ResolveRuntimeDir finds the rootless runtime directory the way Podman does (containers/
// storage's homedir.GetRuntimeDir, as Podman 4.3 behaves: pinned against `podman info` in
// the tests), without Podman's side effect of creating directories:
//
//  1. $XDG_RUNTIME_DIR when set, as given (symlinks are not resolved); Podman refuses one that
//     belongs to someone else, and one that does not exist must be creatable;
//  2. /run/user/UID when it is the user's own directory with rwx for them;
//  3. $TMPDIR/podman-run-UID (default /tmp) under the same conditions, or when it does not
//     exist yet and can be created (Podman creates it on first use);
//  4. $HOME/rundir, with $HOME's symlinks resolved; Podman does not create it.
//
// Where Podman itself could not run, the error says why and how to fix the environment.
func ResolveRuntimeDir(env RuntimeEnv) (RuntimeDir, error) {
	uid := strconv.Itoa(env.UID)
	if xdg := env.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		st, err := env.Stat(xdg)
		if err != nil {
			if !creatable(env, filepath.Dir(xdg)) {
				return RuntimeDir{}, &RuntimeDirError{
					Detail: fmt.Sprintf("XDG_RUNTIME_DIR is %s, which does not exist and cannot be created by you (a login through su or sudo keeps another session's value): Podman cannot serve its API there", xdg),
					Fix:    "unset XDG_RUNTIME_DIR   # Podman then uses /run/user/" + uid + " or $TMPDIR/podman-run-" + uid,
				}
			}
			return RuntimeDir{Path: xdg, Why: "XDG_RUNTIME_DIR (it does not exist yet; Podman creates it)", Absent: true}, nil
		}
		if owner, ok := env.Owner(st); ok && owner != env.UID {
			return RuntimeDir{}, &RuntimeDirError{
				Detail: fmt.Sprintf("XDG_RUNTIME_DIR is %s, which belongs to uid %d, not to you (uid %d): Podman refuses it", xdg, owner, env.UID),
				Fix:    "unset XDG_RUNTIME_DIR   # or log in as this user through a session manager (systemd --user)",
			}
		}
		return RuntimeDir{Path: xdg, Why: "XDG_RUNTIME_DIR"}, nil
	}
	usable := func(dir string) (ok, absent bool) {
		st, err := env.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return false, true
		}
		if err != nil {
			return false, false
		}
		owner, known := env.Owner(st)
		return st.IsDir() && known && owner == env.UID && st.Mode().Perm()&0o700 == 0o700, false
	}
	runUser := filepath.Join("/run", "user", uid)
	if ok, _ := usable(runUser); ok {
		return RuntimeDir{Path: runUser, Why: "XDG_RUNTIME_DIR is not set; " + runUser + " is your own directory"}, nil
	}
	tmp := env.TempDir
	if tmp == "" {
		tmp = "/tmp"
	}
	podmanRun := filepath.Join(tmp, "podman-run-"+uid)
	// /run/user/UID is absent or not usable: only root or a session manager (systemd --user)
	// makes it, and Podman's own attempt to create it fails for a normal user.
	why := "XDG_RUNTIME_DIR is not set and " + runUser + " is not your own directory (no session manager made it)"
	if ok, absent := usable(podmanRun); ok || (absent && creatable(env, tmp)) {
		rd := RuntimeDir{Path: podmanRun, Why: why + "; Podman falls back to " + podmanRun, Absent: absent}
		if absent {
			rd.Why += ", which it creates on first use"
		}
		return rd, nil
	}
	home := env.Getenv("HOME")
	if home == "" {
		return RuntimeDir{}, &RuntimeDirError{
			Detail: fmt.Sprintf("neither XDG_RUNTIME_DIR nor HOME is set, and %s is not usable: Podman cannot find a runtime directory", podmanRun),
			Fix:    "export XDG_RUNTIME_DIR=$(mktemp -d)   # or set HOME",
		}
	}
	if r, err := env.EvalSymlinks(home); err == nil {
		home = r
	}
	rundir := filepath.Join(home, "rundir")
	if _, err := env.Stat(rundir); err != nil {
		return RuntimeDir{}, &RuntimeDirError{
			Detail: fmt.Sprintf("%s and %s is not usable (it belongs to someone else or cannot be created), so Podman falls back to %s, which does not exist: Podman cannot run", why, podmanRun, rundir),
			Fix:    "mkdir -m 700 " + rundir + "   # or export XDG_RUNTIME_DIR to a private directory of yours",
		}
	}
	return RuntimeDir{Path: rundir, Why: why + " and " + podmanRun + " is not usable; Podman falls back to $HOME/rundir"}, nil
}

// creatable reports whether the user can create a directory in dir: a world-writable
// directory such as /tmp, or their own.
func creatable(env RuntimeEnv, dir string) bool {
	st, err := env.Stat(dir)
	if err != nil || !st.IsDir() {
		return false
	}
	if st.Mode().Perm()&0o002 != 0 {
		return true
	}
	owner, ok := env.Owner(st)
	return ok && owner == env.UID && st.Mode().Perm()&0o200 != 0
}
