package repocopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	gitconfig "github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
	"github.com/sourceos/sourceosctl/internal/gitrun"
)

// shadowSubmoduleConfigs shadows the git directory of each submodule under .git/modules
// (shadowGitDir).
func (c *Copy) shadowSubmoduleConfigs(up upperWriter) error {
	modules := filepath.Join(c.GitDir, "modules")
	if _, err := os.Lstat(modules); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(modules, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Name() != "config" || !e.Type().IsRegular() {
			return nil
		}
		return c.shadowGitDir(up, filepath.Dir(p))
	})
}

// shadowGitDir hides a submodule's git directory's own records (as the repository's:
// hideGitBookkeeping) and writes, over its configuration, one of the copy's own: the format,
// the bare flag, a work tree inside the repository and remotes without credentials — what
// git in the copy needs to use the submodule, and nothing the user's file may hold besides
// (tokens in URLs, credential helpers, http headers). Without it the agent would read them
// through the overlay's lower layer. The file is parsed, never run; one that does not parse
// is hidden.
func (c *Copy) shadowGitDir(up upperWriter, gitDir string) error {
	rel, err := filepath.Rel(c.Repo, gitDir)
	if err != nil {
		return nil
	}
	rel = filepath.ToSlash(rel)
	if err := hideGitBookkeeping(up, gitDir, rel); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(gitDir, "config"))
	if err != nil {
		return nil
	}
	cfg := gitconfig.New()
	if err := gitconfig.NewDecoder(bytes.NewReader(raw)).Decode(cfg); err != nil {
		return up.whiteout(rel + "/config")
	}
	return up.writeFile(rel+"/config", []byte(submoduleConfig(cfg, rel)), 0o644)
}

// submoduleConfig is the copy's configuration for the submodule whose git directory is dir
// (relative to the repository, slash-separated).
func submoduleConfig(cfg *gitconfig.Config, dir string) string {
	var b strings.Builder
	b.WriteString("# The copy's configuration for this submodule, written by sourceosctl.\n[core]\n")
	core := cfg.Section("core")
	if v := core.Option("repositoryformatversion"); v == "0" || v == "1" {
		b.WriteString("\trepositoryformatversion = " + v + "\n")
	}
	if v := core.Option("bare"); v == "true" || v == "false" {
		b.WriteString("\tbare = " + v + "\n")
	}
	// The submodule's work tree, relative to its git directory, must stay in the repository.
	if wt := core.Option("worktree"); wt != "" && safeValue(wt) && !path.IsAbs(wt) && !strings.ContainsAny(wt, `"\`) {
		if target := path.Join(dir, wt); target != ".." && !strings.HasPrefix(target, "../") {
			b.WriteString("\tworktree = " + wt + "\n")
		}
	}
	for _, sub := range cfg.Section("remote").Subsections {
		if !safeValue(sub.Name) || strings.ContainsAny(sub.Name, `"\`) {
			continue
		}
		var lines []string
		for _, u := range sub.Options.GetAll("url") {
			u = fingerprint.StripCredentials(u)
			if safeValue(u) && !strings.HasPrefix(u, "ext::") && !strings.HasPrefix(u, "fd::") {
				lines = append(lines, "\turl = "+u)
			}
		}
		for _, f := range sub.Options.GetAll("fetch") {
			if safeValue(f) {
				lines = append(lines, "\tfetch = "+f)
			}
		}
		if len(lines) > 0 {
			b.WriteString("[remote \"" + sub.Name + "\"]\n" + strings.Join(lines, "\n") + "\n")
		}
	}
	return b.String()
}

// nestedRepositories are the repositories of their own inside the untracked directories
// dirs (relative, ending with /): git status lists such a repository as an untracked
// directory and looks no further, so its configuration (a token in a remote's URL) and its
// ignored files (its .env) would be in the copy. They are hidden like ignored paths — the
// collector would not bring them back either — unless the profile includes them.
func nestedRepositories(repo string, dirs []string) ([]string, error) {
	var found []string
	for _, d := range dirs {
		root := filepath.Join(repo, filepath.FromSlash(strings.TrimSuffix(d, "/")))
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
					return nil // gone since the status, or not readable (the session cannot read it either)
				}
				return err
			}
			if !e.IsDir() {
				return nil
			}
			if _, err := os.Lstat(filepath.Join(p, ".git")); err == nil {
				rel, _ := filepath.Rel(repo, p)
				found = append(found, filepath.ToSlash(rel)+"/")
				return fs.SkipDir
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("look for repositories inside %s: %w", d, err)
		}
	}
	return found, nil
}

// submoduleIgnored are the ignored paths inside the submodules' work trees (relative to the
// repository), or why they could not be read.
type submoduleIgnored struct {
	links []string // the gitlinks of the top level's index
	paths []string
	// gitDirs are submodules' git directories inside their work trees (a submodule cloned
	// by an old git, never absorbed into .git/modules), absolute.
	gitDirs []string
	err     error
}

// maxSubmoduleDepth bounds the submodules of submodules read.
const maxSubmoduleDepth = 8

// ignoredInSubmodules reads the ignored paths of each checked-out submodule of the work tree
// at repo/prefix — every gitlink its index records, with a .gitmodules entry or not (an
// embedded repository) — by its own .gitignore rules (the superproject's status does not look
// inside them), and of their submodules. git runs in each as in the repository, as its owner,
// fsmonitor off; a gitlink whose path is not a plain directory of the work tree (through a
// symbolic link) is not entered.
func ignoredInSubmodules(ctx context.Context, g gitrun.Git, repo, prefix string, depth int) submoduleIgnored {
	var out submoduleIgnored
	if depth >= maxSubmoduleDepth {
		return out
	}
	links, err := Gitlinks(ctx, g, filepath.Join(repo, filepath.FromSlash(prefix)))
	if err != nil {
		out.err = err
		return out
	}
	if depth == 0 {
		out.links = links
	}
	for _, link := range links {
		rel := path.Join(prefix, link)
		if !PlainDirectory(repo, rel) {
			continue
		}
		dir := filepath.Join(repo, filepath.FromSlash(rel))
		dotGit, err := os.Lstat(filepath.Join(dir, ".git"))
		if err != nil {
			continue // not checked out: nothing in it
		}
		if dotGit.IsDir() {
			out.gitDirs = append(out.gitDirs, filepath.Join(dir, ".git"))
		}
		raw, err := g.Raw(ctx, dir, "status", "--porcelain=v2", "-z", "--ignored=traditional", "--untracked-files=normal")
		if err != nil {
			out.err = fmt.Errorf("read the ignored files of submodule %s: %w", rel, err)
			return out
		}
		_, _, entries := parseStatus(raw)
		st := Scan{Entries: entries}
		for _, p := range st.Ignored() {
			out.paths = append(out.paths, rel+"/"+p)
		}
		nested, err := nestedRepositories(dir, st.Untracked())
		if err != nil {
			out.err = err
			return out
		}
		for _, p := range nested {
			out.paths = append(out.paths, rel+"/"+p)
		}
		deeper := ignoredInSubmodules(ctx, g, repo, rel, depth+1)
		if deeper.err != nil {
			return deeper
		}
		out.paths = append(out.paths, deeper.paths...)
		out.gitDirs = append(out.gitDirs, deeper.gitDirs...)
	}
	return out
}

// Gitlinks are the paths (slash-separated, relative) of the submodules the index of the
// work tree at dir records: mode 160000 entries, with or without a .gitmodules entry.
func Gitlinks(ctx context.Context, g gitrun.Git, dir string) ([]string, error) {
	raw, err := g.Raw(ctx, dir, "ls-files", "--stage", "-z")
	if err != nil {
		return nil, fmt.Errorf("list the submodules of %s: %w", dir, err)
	}
	// Records are "MODE OBJECT STAGE\tPATH" NUL.
	var links []string
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, 0)
		if end < 0 {
			end = len(raw)
		}
		if rec := raw[:end]; bytes.HasPrefix(rec, []byte("160000 ")) {
			if _, p, ok := bytes.Cut(rec, []byte("\t")); ok {
				links = append(links, string(p))
			}
		}
		raw = raw[min(end+1, len(raw)):]
	}
	return links, nil
}

// PlainDirectory reports whether rel (slash-separated) is a directory of the work tree at
// repo reached through directories only — no component a symbolic link.
func PlainDirectory(repo, rel string) bool {
	p := repo
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		if err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}
