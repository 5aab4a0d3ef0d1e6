package policy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/policy"
)

// FuzzMountPolicy: whatever path is asked for — relative segments, .., symlinks in a real
// home full of credentials — an allowed mount is never a protected path, never inside one
// (unless exact), never a parent of one, and a symlinked source lands inside the allowlist.
func FuzzMountPolicy(f *testing.F) {
	for _, s := range []string{"dev/app", ".ssh", "dev/../.ssh", "dev/ssh-link", "dev/home-link", "..", "/", "/etc", "dev/app/escape", ".config", "dev/outside-link", "dev/./app//", "../../..", "dev/relative-link/x"} {
		f.Add(s, "dev/app")
	}
	f.Fuzz(func(t *testing.T, mount, repo string) {
		if strings.ContainsRune(mount+repo, 0) || len(mount) > 256 || len(repo) > 256 {
			return
		}
		h, home := realHome(t)
		abs := func(p string) string {
			if filepath.IsAbs(p) {
				return filepath.Clean(p)
			}
			return filepath.Clean(filepath.Join(home, p))
		}
		prof := mustProfile(t, "")
		prof.Spec.Mounts = append(prof.Spec.Mounts, profileMount(abs(mount)))
		d := policy.Decide(prof, policy.Request{Tool: "shell", Repo: abs(repo)}, h)
		protected := expandAll(h)
		for _, m := range d.Mounts {
			if !m.Allowed {
				continue
			}
			for _, p := range protected {
				for _, path := range []string{m.Declared, m.Source} {
					if path == p.path || (!p.exact && inside(path, p.path)) || inside(p.path, path) {
						t.Fatalf("allowed %s (declared %s) against protected %s", m.Source, m.Declared, p.path)
					}
				}
			}
			if fi, err := os.Lstat(m.Declared); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if !inside(m.Source, abs(repo)) && !inside(m.Source, abs(mount)) {
					t.Fatalf("allowed symlink %s -> %s outside the allowlist", m.Declared, m.Source)
				}
			}
		}
	})
}

type expanded struct {
	path  string
	exact bool
}

// expandAll is an independent expansion of the protected list, in both forms.
func expandAll(h policy.Host) []expanded {
	var out []expanded
	for _, p := range policy.ProtectedPaths {
		if len(p.OS) > 0 && p.OS[0] != h.OS {
			continue
		}
		path := expand(p, h)
		out = append(out, expanded{path, p.Exact})
		if r, err := filepath.EvalSymlinks(path); err == nil {
			out = append(out, expanded{r, p.Exact})
		}
	}
	return out
}

func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// FuzzHardLinks links a file of a protected entry (chosen by the input) to a path inside the
// repository (also the input's) and expects the hard-link check to refuse the session.
func FuzzHardLinks(f *testing.F) {
	for i, s := range []string{"k", "src/.hidden", ".git/objects/ab/cd", "a b/c\td", "deep/er/and/deeper/x", "..x", "-rf"} {
		f.Add(uint(i*7), s, i%2 == 0)
	}
	var entries []policy.Protected
	for _, p := range policy.ProtectedPaths {
		if strings.HasPrefix(p.Path, "~/") && !p.Exact && !p.Bulky && (len(p.OS) == 0 || slices.Contains(p.OS, "linux")) {
			entries = append(entries, p)
		}
	}
	f.Fuzz(func(t *testing.T, which uint, at string, below bool) {
		rel := filepath.Clean(at)
		if at == "" || strings.ContainsRune(at, 0) || len(at) > 200 || filepath.IsAbs(rel) || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return
		}
		h, home, prof := linkHome(t)
		p := entries[which%uint(len(entries))]
		secret := filepath.Join(home, p.Path[2:])
		if below {
			secret = filepath.Join(secret, "x")
		}
		write(t, secret, "secret")
		linked := filepath.Join(home, "dev/app", rel)
		if err := os.MkdirAll(filepath.Dir(linked), 0o755); err != nil {
			return // a path component the file system rejects (too long, or a file already)
		}
		if err := os.Link(secret, linked); err != nil {
			return
		}
		r := hardLinks(t, h, home, prof)
		if len(r) != 1 || !strings.Contains(r[0].Reason, linked+" is a hard link to ") {
			t.Fatalf("%s linked at %s: refusals %+v", secret, linked, r)
		}
	})
}
