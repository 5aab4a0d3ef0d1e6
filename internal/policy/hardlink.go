package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// RuleHardLink refuses a mount holding a hard link to a protected file: the link is the
// protected file's content under another name, whatever the link's own path.
const RuleHardLink = "hard-link-to-protected"

// protectedHeadStart is how long the protected entries are walked alone before the mounts
// are walked too (a variable: tests start both at once).
var protectedHeadStart = 20 * time.Millisecond

// fileID is a file's identity on the host: its device and inode.
type fileID struct{ dev, ino uint64 }

// linkedFile is a file with more than one link, found below a mount or a protected entry.
type linkedFile struct{ root, what, path string }

// HardLinks refuses every allowed mount that holds a hard link to a protected file. A hard
// link is one inode with two names, so both names have a link count above one: the check
// looks, at once, for such files below the allowed mounts and below the protected entries
// on the mounts' devices (a hard link never crosses one), and as soon as either side has
// none, no mount can hold a link to a protected file and the other walk stops. Only when
// both have some are their inodes compared. The protected entries are usually a few small
// credential stores, and settle a session on a large repository in milliseconds (they are
// walked first, alone for protectedHeadStart); a small repository settles it when a
// protected entry is large (a browser profile). Container storage (Bulky) and the home and
// root themselves (Exact) are not walked.
// Off Unix there are no link counts to read, and it returns nothing (the plan says so).
func HardLinks(ctx context.Context, d *Decision, h Host) ([]Refusal, error) {
	if !linkCountsKnown {
		return nil, nil
	}
	var mounts []linkedFile // root and the mount's declared path
	devices := map[uint64]bool{}
	for _, m := range d.Mounts {
		if !m.Allowed {
			continue
		}
		if dev, ok := placeDevice(m.Source); ok {
			mounts = append(mounts, linkedFile{root: m.Source, what: m.Declared})
			devices[dev] = true
		}
	}
	var protected []linkedFile // root and what it holds
	for _, p := range h.protected() {
		if p.Exact || p.Bulky {
			continue
		}
		if dev, ok := placeDevice(p.resolved); ok && devices[dev] {
			protected = append(protected, linkedFile{root: p.resolved, what: p.What})
		}
	}
	if len(mounts) == 0 || len(protected) == 0 {
		return nil, nil
	}
	walkCtx, settle := context.WithCancel(ctx)
	defer settle()
	var (
		wg             sync.WaitGroup
		links, targets map[fileID][]linkedFile
		linksErr       error
		targetsErr     error
	)
	// The protected side has a head start: usually a few small credential stores, it
	// settles the check alone, and a large repository's walk would take the cores it needs.
	// The mounts are walked once it has found a linked file, or after protectedHeadStart.
	protectedDone := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(protectedDone)
		if targets, targetsErr = linkedFiles(walkCtx, protected); targetsErr == nil && len(targets) == 0 {
			settle()
		}
	}()
	go func() {
		defer wg.Done()
		headStart := time.NewTimer(protectedHeadStart)
		defer headStart.Stop()
		select {
		case <-protectedDone:
		case <-headStart.C:
		case <-walkCtx.Done():
		}
		if linksErr = walkCtx.Err(); linksErr != nil {
			return
		}
		if links, linksErr = linkedFiles(walkCtx, mounts); linksErr == nil && len(links) == 0 {
			settle()
		}
	}()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if (linksErr == nil && len(links) == 0) || (targetsErr == nil && len(targets) == 0) {
		return nil, nil
	}
	if linksErr != nil {
		return nil, linksErr
	}
	if targetsErr != nil {
		return nil, targetsErr
	}
	found := map[string][]string{} // mount → "link is a hard link to protected (what)" lines
	for id, names := range links {
		for _, n := range names {
			// A protected tree the user mounted on purpose (allowProtected, twice) may hold
			// links within itself: only a protected name outside the mount is a leak.
			for _, t := range targets[id] {
				if !within(t.path, n.root) {
					found[n.what] = append(found[n.what], fmt.Sprintf("%s is a hard link to %s (%s)", n.path, t.path, t.what))
					break
				}
			}
		}
	}
	var refusals []Refusal
	declared := make([]string, 0, len(found))
	for m := range found {
		declared = append(declared, m)
	}
	sort.Strings(declared)
	for _, m := range declared {
		sort.Strings(found[m])
		subject := "mount " + m
		if len(d.Mounts) > 0 && d.Mounts[0].Declared == m && d.Mounts[0].Role == RoleWorkspace {
			subject = "repository " + m
		}
		refusals = append(refusals, Refusal{Subject: subject, Rule: RuleHardLink, Reason: strings.Join(found[m], "; "),
			Fix: "remove the link (it is the protected file itself under another name), or replace it with a copy of what the session may see"})
	}
	return refusals, nil
}

// linkedFiles walks each root in turn (each on its own device) and returns the files with
// more than one link by inode, each named once per path, the first root's first (by path)
// name first.
func linkedFiles(ctx context.Context, roots []linkedFile) (map[fileID][]linkedFile, error) {
	out := map[fileID][]linkedFile{}
	for _, r := range roots {
		found := map[fileID][]linkedFile{}
		err := walkSameDevice(ctx, r.root, func(path string, id fileID, _ uint64) {
			found[id] = append(found[id], linkedFile{root: r.root, what: r.what, path: path})
		})
		if err != nil {
			return nil, err
		}
		for id, names := range found {
			sort.Slice(names, func(i, j int) bool { return names[i].path < names[j].path })
			out[id] = append(out[id], names...)
		}
	}
	return out, nil
}

// placeDevice is the device of path when it is a directory, else of the directory holding it.
// The filter compares places: on an overlay whose layers are on different file systems (a live
// system's squashfs under tmpfs) each regular file reports its layer's device and each
// directory the overlay's, so a file's own device would tell a protected file apart from a
// repository on the same overlay. The linked files themselves are matched by their own
// device and inode, which both names share.
func placeDevice(path string) (uint64, bool) {
	id, dir, err := lstatID(path)
	if err != nil {
		return 0, false
	}
	if dir {
		return id.dev, true
	}
	parent, _, err := lstatID(filepath.Dir(path))
	return parent.dev, err == nil
}
