package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// RuleHardLink refuses a mount holding a hard link to a protected file: the link is the
// protected file's content under another name, whatever the link's own path.
const RuleHardLink = "hard-link-to-protected"

// fileID is a file's identity on the host: its device and inode.
type fileID struct{ dev, ino uint64 }

// HardLinks refuses every allowed mount that holds a hard link to a protected file. It walks
// the mounts once, keeping only files with more than one link — a listing and an lstat per
// file, what `git status` already pays for the repository — and walks the protected trees only
// when such a file exists, and then only on those files' devices (a hard link never crosses
// one). Container storage (Bulky) and the home and root themselves (Exact) are not walked.
// Off Unix there are no link counts to read, and it returns nothing (the plan says so).
func HardLinks(ctx context.Context, d *Decision, h Host) ([]Refusal, error) {
	if !linkCountsKnown {
		return nil, nil
	}
	type candidate struct{ mount, path string }
	candidates := map[fileID][]candidate{}
	devices := map[uint64]bool{}
	for _, m := range d.Mounts {
		if !m.Allowed {
			continue
		}
		err := walkSameDevice(ctx, m.Source, func(path string, id fileID, nlink uint64) {
			if nlink > 1 {
				candidates[id] = append(candidates[id], candidate{mount: m.Declared, path: path})
				devices[id.dev] = true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	found := map[string][]string{} // mount → "link is protected (what)" lines
	for _, p := range h.protected() {
		if p.Exact || p.Bulky {
			continue
		}
		if root, err := lstatID(p.resolved); err != nil || !devices[root.dev] {
			continue // absent, or on a device none of the links is on
		}
		err := walkSameDevice(ctx, p.resolved, func(path string, id fileID, nlink uint64) {
			if nlink < 2 || !devices[id.dev] {
				return
			}
			for _, c := range candidates[id] {
				found[c.mount] = append(found[c.mount], fmt.Sprintf("%s is a hard link to %s (%s)", c.path, path, p.What))
			}
			delete(candidates, id) // reported once, under the first protected entry naming it
		})
		if err != nil {
			return nil, err
		}
	}
	var refusals []Refusal
	mounts := make([]string, 0, len(found))
	for m := range found {
		mounts = append(mounts, m)
	}
	sort.Strings(mounts)
	for _, m := range mounts {
		subject := "mount " + m
		if len(d.Mounts) > 0 && d.Mounts[0].Declared == m && d.Mounts[0].Role == RoleWorkspace {
			subject = "repository " + m
		}
		refusals = append(refusals, Refusal{Subject: subject, Rule: RuleHardLink, Reason: strings.Join(found[m], "; "),
			Fix: "remove the link (it is the protected file itself under another name), or replace it with a copy of what the session may see"})
	}
	return refusals, nil
}
