package policy_test

import (
	"os"
	"path/filepath"
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
