package repocopy

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	gitconfig "github.com/go-git/go-git/v5/plumbing/format/config"

	"github.com/sourceos/sourceosctl/internal/fingerprint"
)

// shadowSubmoduleConfigs hides each submodule's git directory's own records (as the
// repository's: hideGitBookkeeping) and writes, over its configuration under .git/modules, one
// of the copy's own: the format, the bare flag, a work tree inside the repository and remotes
// without credentials — what git in the copy needs to use the submodule, and nothing the
// user's file may hold besides (tokens in URLs, credential helpers, http headers). Without it
// the agent would read them through the overlay's lower layer. The files are parsed, never
// run; a file that does not parse is hidden.
func (c *Copy) shadowSubmoduleConfigs(up upperWriter) error {
	modules := filepath.Join(c.GitDir, "modules")
	if _, err := os.Lstat(modules); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(modules, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Name() != "config" || !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(c.Repo, p)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if err := hideGitBookkeeping(up, filepath.Dir(p), path.Dir(rel)); err != nil {
			return err
		}
		cfg := gitconfig.New()
		if err := gitconfig.NewDecoder(bytes.NewReader(raw)).Decode(cfg); err != nil {
			return up.whiteout(rel)
		}
		return up.writeFile(rel, []byte(submoduleConfig(cfg, path.Dir(rel))), 0o644)
	})
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
