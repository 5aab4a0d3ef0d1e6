// Package repocopy gives each session its own copy of the repository: an overlay whose lower
// layer is the user's work tree (read-only to the container) and whose upper layer, in
// sourceosctl's state directory, receives every write — the agent's edits, its commits, even
// a rewritten .git/config. Nothing the container writes is ever in the user's repository,
// and sourceosctl never runs git in the copy on the host: the agent's work comes back as a
// git bundle written by sourceos-helper in a short-lived container (internal/collect) and
// fetched with git's transport, which is built for untrusted peers.
//
// The copy starts from the user's HEAD plus their uncommitted changes (a commit sourceosctl
// makes, with the user's own git, from a copy of their index), on its own branch. Ignored
// files — where .env secrets and build output live — are hidden by whiteouts in the upper
// layer unless the profile names them (workspace.include).
package repocopy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
)

// Modes of a session's workspace.
const (
	// ModeCopy is the default: the session works on its own copy and branch.
	ModeCopy = "copy"
	// ModeDirect mounts the live work tree; its .git stays read-only.
	ModeDirect = "direct"
)

// Trailer names the session on every commit of its branch.
const Trailer = "Sourceos-Session"

// BranchPrefix starts the default branch name: agent/<session-id>.
const BranchPrefix = "agent/"

// Copy is one session's copy of a repository.
type Copy struct {
	Session string `json:"session"`
	// Repo is the user's repository (its top level); GitDir its .git directory.
	Repo   string `json:"repo"`
	GitDir string `json:"gitDir"`
	// Dir holds the copy: upper/ and work/ (the overlay's layers) and out/ (the collector's).
	Dir    string `json:"dir"`
	Branch string `json:"branch"`
	// Head is the user's HEAD when the session started ("" in a repository without commits);
	// Snapshot the commit sourceosctl made of their uncommitted changes ("" when clean); Base
	// is where the branch starts: Snapshot, else Head.
	Head     string `json:"head,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Base     string `json:"base,omitempty"`
	// Masked are the ignored paths hidden from the session; Included the ignored paths it
	// sees because the profile names them.
	Masked   []string  `json:"masked"`
	Included []string  `json:"included"`
	Created  time.Time `json:"created"`
	// Result is what came back, once the session has ended (nil before); CollectError why it
	// could not come back (the layers are kept).
	Result       *Result `json:"result,omitempty"`
	CollectError string  `json:"collectError,omitempty"`
	// Rewrite: the branch is a workspace's, brought back whole at each of its downs, so it
	// replaces what an earlier down left there (never a branch it did not make: the name
	// was checked free when the workspace was first brought up).
	Rewrite bool `json:"rewrite,omitempty"`
	// moved is the branch destination found moved, origin the workspace's own branch name
	// (see destination).
	moved, origin string
	// Merged is the commit that merged the branch into the user's branch, and when.
	Merged   string    `json:"merged,omitempty"`
	MergedAt time.Time `json:"mergedAt,omitempty"`
}

// Result is the agent's work as it arrived in the user's repository.
type Result struct {
	// Changed is false when the agent left the copy as it found it: no branch is made.
	Changed bool `json:"changed"`
	// Head is the branch's commit; Commits every commit on it after Base, oldest first.
	Head    string   `json:"head,omitempty"`
	Commits []string `json:"commits,omitempty"`
	// Leftover is the commit sourceosctl made of what the agent left uncommitted ("" when
	// nothing was).
	Leftover string `json:"leftover,omitempty"`
	// Stat is git's --shortstat of Base..Head.
	Stat string `json:"stat,omitempty"`
	// Kept names a workspace's branch that had moved since its last down (a commit of the
	// user's on it): it was left as it was, and this work went to another branch. Origin is
	// the workspace's own branch name, which later downs number from.
	Kept   string `json:"kept,omitempty"`
	Origin string `json:"origin,omitempty"`
}

// Upper, Work and Out are the copy's directories.
func (c *Copy) Upper() string { return filepath.Join(c.Dir, "upper") }
func (c *Copy) Work() string  { return filepath.Join(c.Dir, "work") }
func (c *Copy) Out() string   { return filepath.Join(c.Dir, "out") }

// CopiesDir is where a state directory keeps its copies.
func CopiesDir(state string) string { return filepath.Join(state, "copies") }

// Plan is a session's copy as a dry run shows it: nothing is read or written.
func Plan(state, session, repo, branch string) *Copy {
	if branch == "" {
		branch = BranchPrefix + session
	}
	return &Copy{Session: session, Repo: repo, GitDir: filepath.Join(repo, ".git"), Dir: filepath.Join(CopiesDir(state), session),
		Branch: branch, Masked: []string{}, Included: []string{}}
}

// validBranch is what git accepts as a branch name, conservatively.
var validBranch = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// CheckBranch refuses a branch name git would refuse, or one that could be read as an option.
func CheckBranch(name string) error {
	if !validBranch.MatchString(name) || strings.Contains(name, "..") || strings.Contains(name, "//") ||
		strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".") || strings.Contains(name, "/.") {
		return fmt.Errorf("%q is not a branch name git accepts (letters, digits, . _ / -; no .., no trailing / or .lock)", name)
	}
	// git would make these, and every later command would find them ambiguous with HEAD
	// (or another special ref) or with a ref's full name.
	if name == "HEAD" || strings.HasSuffix(name, "_HEAD") && strings.ToUpper(name) == name {
		return fmt.Errorf("%q names one of git's own refs: choose another branch name", name)
	}
	for _, p := range []string{"refs/", "heads/", "tags/", "remotes/"} {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("%q starts like a ref's full name (%s…), which git would find ambiguous: choose another branch name", name, p)
		}
	}
	return nil
}

const metaFile = "copy.json"

// Save writes the copy's description beside its layers.
func (c *Copy) Save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.Dir, metaFile), append(b, '\n'), 0o600, atomicfile.Options{})
}

// Load reads a copy by its session id.
func Load(state, session string) (*Copy, error) {
	if strings.ContainsAny(session, `/\`) || session == "" || session == "." || session == ".." {
		return nil, fmt.Errorf("%q is not a session id", session)
	}
	b, err := os.ReadFile(filepath.Join(CopiesDir(state), session, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no copy of session %s (discarded, merged, or never made: see sourceosctl agent-machine sessions)", session)
	}
	if err != nil {
		return nil, err
	}
	var c Copy
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(CopiesDir(state), session, metaFile), err)
	}
	return &c, nil
}

// List returns every copy below state, newest first; unreadable ones are skipped and named.
func List(state string) ([]*Copy, []string, error) {
	entries, err := os.ReadDir(CopiesDir(state))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var out []*Copy
	var broken []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := Load(state, e.Name())
		if err != nil {
			broken = append(broken, e.Name())
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session > out[j].Session })
	return out, broken, nil
}

// DiskUsage is what the copy holds on disk, in bytes: its layers (the agent's writes, the
// hidden paths' whiteouts), the collector's bundle and the description. Links are not
// followed; what cannot be read is not counted.
func (c *Copy) DiskUsage() int64 {
	var n int64
	_ = filepath.WalkDir(c.Dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
