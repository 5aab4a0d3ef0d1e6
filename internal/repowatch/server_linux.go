package repowatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sourceos/sourceosctl/internal/gitrun"
	"github.com/sourceos/sourceosctl/internal/repocopy"
)

// Server watches one repository and answers its sessions.
type Server struct {
	Repo   string // the work tree's top level, absolute
	Socket string
	Git    gitrun.Git
	// Idle ends the watcher after that long without a question (default a day).
	Idle time.Duration
	// MaxWatches bounds the directories watched, MaxChanges the paths read again for one
	// answer (defaults 100,000 and 1,000): beyond them the watcher ends.
	MaxWatches, MaxChanges int
	Log                    io.Writer

	mu      sync.Mutex
	scan    repocopy.Scan
	tracked map[string]bool      // directories with tracked files below them ("" is the top)
	skipped map[string]bool      // the directories not watched: ignored by a rule (ending with /)
	ids     map[string][2]uint64 // the repository's and its .git's device and inode, as watched
	configs []string             // the configuration and excludes files git reads
	statted map[string]string    // rule and configuration files, by path: what they were (fingerprint)
	changes map[string]uint64    // the paths changed, by their last event's number
	seq     uint64
	// stale: HEAD, its branch or the index changed; the next answer reads in full first.
	stale bool
	kick  chan struct{} // stale was set: read in full again soon
	ended error
	done  chan struct{}

	queries sync.Mutex // one answer at a time
	reading sync.Mutex // one reader of the events at a time
	ifd     int        // the inotify instance (non-blocking), -1 once closed
	watches map[int32]*watch
	count   int
}

// watch is what one inotify watch is for: a work tree directory (rel), or the repository's
// or git's records, whose change ends the watcher (gitTop: any name but harmlessInGit; any:
// any name; names: those).
type watch struct {
	work   bool
	rel    string
	gitTop bool
	any    bool
	names  map[string]bool
	// ref names HEAD's branch: its change (a commit) means a full read, not an end.
	ref map[string]bool
}

const (
	workMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_MOVED_FROM |
		unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK
	recordMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_MOVED_FROM |
		unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
)

// harmlessInGit are the entries of a .git directory whose changes do not change the status:
// git's scratch and messages, its objects (HEAD names the commit), logs and hooks; a lock
// file is followed by the rename that does count.
var harmlessInGit = map[string]bool{"FETCH_HEAD": true, "ORIG_HEAD": true, "COMMIT_EDITMSG": true, "logs": true,
	"objects": true, "hooks": true, "description": true, "gc.log": true, "gc.pid": true, "AUTO_MERGE": true,
	"MERGE_MSG": true, "SQUASH_MSG": true, "lfs": true, "rr-cache": true, "refs": true, "branches": true}

// readAgainInGit are the entries of a .git directory whose change — a commit, a checkout,
// something staged — changes what is tracked: the watcher reads the repository in full again
// (before its next answer), as a session without it would, and goes on.
var readAgainInGit = map[string]bool{"HEAD": true, "index": true, "packed-refs": true}

// Run watches the repository and answers questions until the watcher must end; it returns
// why. It returns at once, with an error, when another watcher holds the repository.
func (s *Server) Run(ctx context.Context) error {
	if s.Idle == 0 {
		s.Idle = 24 * time.Hour
	}
	if s.MaxWatches == 0 {
		s.MaxWatches = 100_000
	}
	if s.MaxChanges == 0 {
		s.MaxChanges = 1000
	}
	if s.Log == nil {
		s.Log = io.Discard
	}
	lock, err := os.OpenFile(s.Socket+".lock", os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another watcher holds %s", s.Repo)
	}
	s.done, s.kick = make(chan struct{}), make(chan struct{}, 1)
	s.changes = map[string]uint64{}
	s.ifd = -1
	defer func() {
		s.reading.Lock()
		if s.ifd >= 0 {
			unix.Close(s.ifd)
			s.ifd = -1
		}
		s.reading.Unlock()
	}()
	if err := s.start(ctx); err != nil {
		return err
	}
	_ = os.Remove(s.Socket)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.Socket, Net: "unix"})
	if err != nil {
		return err
	}
	defer os.Remove(s.Socket)
	defer l.Close()
	if err := os.Chmod(s.Socket, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(s.Log, "%s watching %s: %d directories\n", time.Now().UTC().Format(time.RFC3339), s.Repo, s.count)
	go s.events()
	go s.readAgainSoon(ctx)
	go func() {
		select {
		case <-s.done:
		case <-ctx.Done():
			s.end(ctx.Err())
		}
		l.Close()
	}()
	for {
		_ = l.SetDeadline(time.Now().Add(s.Idle))
		conn, err := l.AcceptUnix()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.end(fmt.Errorf("no question for %s", s.Idle))
			}
			s.mu.Lock()
			ended := s.ended
			s.mu.Unlock()
			if ended == nil {
				s.end(err)
				ended = err
			}
			fmt.Fprintf(s.Log, "%s ended: %v\n", time.Now().UTC().Format(time.RFC3339), ended)
			return ended
		}
		s.answer(ctx, conn)
	}
}

// start watches what the scan depends on, then reads it: a change from then on is seen.
func (s *Server) start(ctx context.Context) error {
	for _, v := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"} {
		if os.Getenv(v) != "" {
			return fmt.Errorf("%s is set: the repository's records are not where the watcher looks", v)
		}
	}
	if err := s.same(); err != nil {
		return err
	}
	if err := s.noMounts(); err != nil {
		return err
	}
	first, err := repocopy.ReadScan(ctx, repocopy.ReadingGit(s.Git), s.Repo)
	if err != nil {
		return err
	}
	if len(first.Gitlinks) > 0 {
		return errors.New("the repository has submodules: their state is read in full by every session")
	}
	skip, err := s.ruleIgnored(ctx, first)
	if err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return err
	}
	s.ifd = fd
	s.watches = map[int32]*watch{}
	if err := s.watchRecords(ctx); err != nil {
		return err
	}
	if err := s.addTree("", skip); err != nil {
		return err
	}
	s.skipped = skip
	scan, tracked, err := s.readAll(ctx)
	if err != nil {
		return err
	}
	s.scan, s.tracked = scan, tracked
	return nil
}

// readAll reads the repository in full, and the directories with tracked files. It fails
// when the repository has submodules, or a directory not watched — ignored by a rule — is
// no longer ignored as a whole (something below it is tracked, or the rule went).
func (s *Server) readAll(ctx context.Context) (repocopy.Scan, map[string]bool, error) {
	scan, err := repocopy.ReadScan(ctx, repocopy.ReadingGit(s.Git), s.Repo)
	if err != nil {
		return scan, nil, err
	}
	if len(scan.Gitlinks) > 0 {
		return scan, nil, errors.New("the repository has submodules now")
	}
	now, err := s.ruleIgnored(ctx, scan)
	if err != nil {
		return scan, nil, err
	}
	for d := range s.skipped {
		if !now[d] {
			return scan, nil, fmt.Errorf("%s is no longer ignored as a whole", d)
		}
	}
	tracked, err := s.trackedDirs(ctx)
	return scan, tracked, err
}

// ruleIgnored are the scan's ignored directories that an ignore rule matches themselves (the
// rest are ignored because all they hold is: a new file there may not be).
func (s *Server) ruleIgnored(ctx context.Context, scan repocopy.Scan) (map[string]bool, error) {
	var dirs []string
	for _, p := range scan.Ignored() {
		if strings.HasSuffix(p, "/") {
			dirs = append(dirs, p)
		}
	}
	out := map[string]bool{}
	if len(dirs) == 0 {
		return out, nil
	}
	cmd, err := repocopy.ReadingGit(s.Git).Command(ctx, s.Repo, "check-ignore", "-z", "--stdin")
	if err != nil {
		return nil, err
	}
	cmd.Stdin = strings.NewReader(strings.Join(dirs, "\x00") + "\x00")
	raw, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: none matched
		return nil, fmt.Errorf("git check-ignore: %w", err)
	}
	for _, p := range strings.Split(string(raw), "\x00") {
		if p != "" {
			out[strings.TrimSuffix(p, "/")+"/"] = true
		}
	}
	return out, nil
}

// trackedDirs are the directories with a tracked file below them.
func (s *Server) trackedDirs(ctx context.Context) (map[string]bool, error) {
	raw, err := repocopy.ReadingGit(s.Git).Raw(ctx, s.Repo, "ls-files", "-z")
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{"": true}
	for _, p := range bytes.Split(raw, []byte{0}) {
		for d := path.Dir(string(p)); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	return dirs, nil
}

// watchRecords watches the repository's records and the configuration and excludes files git
// reads for it.
func (s *Server) watchRecords(ctx context.Context) error {
	gitDir := filepath.Join(s.Repo, ".git")
	if err := s.add(gitDir, &watch{gitTop: true}); err != nil {
		return err
	}
	if st, err := os.Lstat(filepath.Join(gitDir, "info")); err == nil && st.IsDir() {
		if err := s.add(filepath.Join(gitDir, "info"), &watch{any: true}); err != nil {
			return err
		}
	}
	if err := s.watchFile(filepath.Join(gitDir, "info", "exclude")); err != nil { // a link's target too
		return err
	}
	if err := s.watchHead(); err != nil {
		return err
	}
	// Replacement refs change what HEAD's tree is read as.
	if err := s.add(filepath.Join(gitDir, "refs"), &watch{names: map[string]bool{"replace": true}}); err != nil {
		return err
	}
	if st, err := os.Lstat(filepath.Join(gitDir, "refs", "replace")); err == nil && st.IsDir() {
		if err := s.add(filepath.Join(gitDir, "refs", "replace"), &watch{any: true}); err != nil {
			return err
		}
	}
	files, err := s.configFiles(ctx)
	if err != nil {
		return err
	}
	s.configs = files
	for _, f := range append(files, filepath.Join(gitDir, "info", "exclude")) {
		if err := s.watchFile(f); err != nil {
			return err
		}
		s.stat(f)
	}
	return nil
}

// stat records what the rule or configuration file at p is (fingerprint); every answer
// compares (changed).
func (s *Server) stat(p string) {
	if s.statted == nil {
		s.statted = map[string]string{}
	}
	s.statted[p] = fingerprint(p)
}

// changed names a rule or configuration file that is not what it was when recorded.
func (s *Server) changed() error {
	for p, was := range s.statted {
		if fingerprint(p) != was {
			return fmt.Errorf("%s changed", p)
		}
	}
	return nil
}

// fingerprint is what the file at p is — its identity, size and times, or its absence — and
// which directories lead to it: an edit through another name (a hard link), or a directory
// on its way replaced, raises no event the watcher sees, but changes this.
func fingerprint(p string) string {
	var b strings.Builder
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if st, err := os.Lstat(d); err == nil {
			id := fileID(st)
			fmt.Fprintf(&b, "%d:%d ", id[0], id[1])
		} else {
			b.WriteString("- ")
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	for _, stat := range []func(string) (fs.FileInfo, error){os.Lstat, os.Stat} {
		st, err := stat(p)
		if err != nil {
			b.WriteString("absent ")
			continue
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		if sys == nil {
			b.WriteString("? ")
			continue
		}
		fmt.Fprintf(&b, "%d:%d %d %d.%d %d.%d %d ", sys.Dev, sys.Ino, sys.Size, sys.Mtim.Sec, sys.Mtim.Nsec, sys.Ctim.Sec, sys.Ctim.Nsec, sys.Nlink)
	}
	return b.String()
}

// watchHead watches the branch HEAD names (a commit moves it).
func (s *Server) watchHead() error {
	gitDir := filepath.Join(s.Repo, ".git")
	head, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return err
	}
	for range 5 { // a symbolic ref to a symbolic ref: each on the way
		ref, ok := strings.CutPrefix(strings.TrimSpace(string(head)), "ref: ")
		if !ok {
			return nil // detached, or the end of the chain: the file holds the commit
		}
		p := filepath.Join(gitDir, filepath.FromSlash(ref))
		dir, name := nearestDir(p)
		if !atOrBelowPath(dir, filepath.Join(gitDir, "refs")) {
			return nil // .git's own watch sees packed-refs and refs/
		}
		if err := s.add(dir, &watch{ref: map[string]bool{name: true}}); err != nil {
			return err
		}
		if head, err = os.ReadFile(p); err != nil {
			return nil // packed
		}
	}
	return nil
}

// configFiles are the files git reads configuration and ignore rules from for this
// repository, present or not: those `git config --show-origin` names (included ones too),
// the user's and the system's, and the excludes file.
func (s *Server) configFiles(ctx context.Context) ([]string, error) {
	g := repocopy.ReadingGit(s.Git).WithConfig("sourceos.home=~/")
	home, err := g.Output(ctx, s.Repo, "config", "--path", "--get", "sourceos.home")
	if err != nil {
		return nil, err
	}
	xdg := filepath.Join(home, ".config")
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" && !gitrun.RunsAsAnother(s.Repo) {
		xdg = x
	}
	files := []string{filepath.Join(home, ".gitconfig"), filepath.Join(xdg, "git", "config"),
		filepath.Join(xdg, "git", "ignore"), "/etc/gitconfig"}
	for _, v := range []string{"GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"} {
		if f := os.Getenv(v); f != "" && filepath.IsAbs(f) && !gitrun.RunsAsAnother(s.Repo) {
			files = append(files, f)
		}
	}
	if x, err := g.Output(ctx, s.Repo, "config", "--path", "--get", "core.excludesFile"); err == nil && x != "" {
		if !filepath.IsAbs(x) {
			x = filepath.Join(s.Repo, x)
		}
		files = append(files, x)
	}
	raw, err := g.Raw(ctx, s.Repo, "config", "--list", "--show-origin", "-z")
	if err != nil {
		return nil, err
	}
	// Records are ORIGIN NUL KEY NL VALUE NUL. An include's file that does not exist yet is
	// not an origin: its path is watched too.
	fields := strings.Split(string(raw), "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		f, ok := strings.CutPrefix(fields[i], "file:")
		if !ok {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(s.Repo, f)
		}
		files = append(files, f)
		key, value, _ := strings.Cut(fields[i+1], "\n")
		key = strings.ToLower(key)
		if key == "include.path" || strings.HasPrefix(key, "includeif.") && strings.HasSuffix(key, ".path") {
			switch {
			case strings.HasPrefix(value, "~/"):
				value = filepath.Join(home, value[2:])
			case !filepath.IsAbs(value):
				value = filepath.Join(filepath.Dir(f), value)
			}
			files = append(files, value)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// watchFile watches the file at p (present or not) for any change: its directory, or the
// nearest one that exists, for the name that leads to it; a symbolic link's target too.
func (s *Server) watchFile(p string) error {
	// A directory on the way that is a symbolic link: repointing it changes the file.
	for d := filepath.Dir(p); d != filepath.Dir(d); d = filepath.Dir(d) {
		if st, err := os.Lstat(d); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			if err := s.add(filepath.Dir(d), &watch{names: map[string]bool{filepath.Base(d): true}}); err != nil {
				return err
			}
		}
	}
	for range 8 { // links to links, a few deep
		dir, name := nearestDir(p)
		if err := s.add(dir, &watch{names: map[string]bool{name: true}}); err != nil {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return nil
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return nil
}

// nearestDir is the nearest directory of p's that exists and the name in it that leads to p
// (p's own, when its directory exists): where p's making or change shows.
func nearestDir(p string) (dir, name string) {
	dir, name = filepath.Dir(p), filepath.Base(p)
	for dir != filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			break
		}
		dir, name = filepath.Dir(dir), filepath.Base(dir)
	}
	return dir, name
}

// add watches dir for what w says, merged with what an earlier watch of it says.
func (s *Server) add(dir string, w *watch) error {
	mask := uint32(recordMask)
	if w.work {
		mask = workMask
	}
	wd, err := unix.InotifyAddWatch(s.ifd, dir, mask|unix.IN_MASK_ADD)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("watch %s: the system's limit of watches is reached (fs.inotify.max_user_watches)", dir)
		}
		return fmt.Errorf("watch %s: %w", dir, err) // wraps the errno
	}
	old, ok := s.watches[int32(wd)]
	if !ok {
		s.count++
		if s.count > s.MaxWatches {
			return fmt.Errorf("more than %d directories to watch", s.MaxWatches)
		}
		s.watches[int32(wd)] = w
		return nil
	}
	old.work = old.work || w.work
	if w.work {
		old.rel = w.rel
	}
	old.gitTop = old.gitTop || w.gitTop
	for n := range w.ref {
		if old.ref == nil {
			old.ref = map[string]bool{}
		}
		old.ref[n] = true
	}
	old.any = old.any || w.any
	for n := range w.names {
		if old.names == nil {
			old.names = map[string]bool{}
		}
		old.names[n] = true
	}
	return nil
}

// addTree watches the work tree's directory rel and the directories below it, but .git
// directories and those skip names (ending with /).
func (s *Server) addTree(rel string, skip map[string]bool) error {
	root := filepath.Join(s.Repo, filepath.FromSlash(rel))
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				return nil // gone meanwhile: its parent's event says so
			}
			return err
		}
		if !e.IsDir() {
			if e.Name() == ".gitignore" {
				s.stat(p) // edited through a hard link, it raises no event here
			}
			return nil
		}
		r, _ := filepath.Rel(s.Repo, p)
		r = filepath.ToSlash(r)
		if r == "." {
			r = ""
		}
		if e.Name() == ".git" && r != "" || skip[r+"/"] {
			return fs.SkipDir
		}
		err = s.add(p, &watch{work: true, rel: r})
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return fs.SkipDir // gone meanwhile, or replaced by a file: its parent's event says so
		}
		return err
	})
}

// events takes the repository's events as they come (a change that must end the watcher
// ends it then), until the watcher ends.
func (s *Server) events() {
	mounts, err := os.Open("/proc/self/mountinfo")
	if err == nil {
		defer mounts.Close()
	}
	for {
		select {
		case <-s.done:
			return
		default:
		}
		s.reading.Lock()
		fd := s.ifd
		s.reading.Unlock()
		if fd < 0 {
			return
		}
		// A second's wait at most: the watcher's end is noticed without closing the
		// instance under a reader. The mount table signals a change with POLLPRI.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if mounts != nil {
			fds = append(fds, unix.PollFd{Fd: int32(mounts.Fd()), Events: unix.POLLPRI})
		}
		if _, err := unix.Poll(fds, 1000); err != nil && !errors.Is(err, unix.EINTR) {
			s.end(fmt.Errorf("wait for the repository's events: %w", err))
			return
		}
		if len(fds) > 1 && fds[1].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			if err := s.noMounts(); err != nil {
				s.end(err)
				return
			}
		}
		if err := s.drain(); err != nil {
			s.end(err)
			return
		}
	}
}

// drain takes every event queued so far. An answer drains first: every change made before
// the question is then among the paths read again. A change that ends the watcher ends it
// here, before another drain can see the queue empty and answer.
func (s *Server) drain() error {
	s.reading.Lock()
	defer s.reading.Unlock()
	if err := s.takeEvents(); err != nil {
		s.end(err)
		return err
	}
	return nil
}

func (s *Server) takeEvents() error {
	buf := make([]byte, 64<<10)
	for s.ifd >= 0 {
		n, err := unix.Read(s.ifd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the repository's events: %w", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if err := s.event(ev.Wd, ev.Mask, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// event takes one event: a path to read again, or why the watcher must end.
func (s *Server) event(wd int32, mask uint32, name string) error {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		return errors.New("too many changes at once (the event queue overflowed)")
	}
	if mask&unix.IN_UNMOUNT != 0 {
		return errors.New("a file system inside the repository was unmounted")
	}
	s.mu.Lock()
	w, ok := s.watches[wd]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	if mask&unix.IN_IGNORED != 0 {
		s.mu.Lock()
		delete(s.watches, wd)
		s.mu.Unlock()
		if !w.work {
			return errors.New("a watched configuration directory went away")
		}
		return nil
	}
	switch {
	case w.names[name], w.any:
		return fmt.Errorf("%s changed", name)
	case w.ref[name] || w.gitTop && readAgainInGit[name]:
		s.mu.Lock()
		s.stale = true
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
		return nil
	case w.gitTop && !harmlessInGit[name] && !strings.HasSuffix(name, ".lock"):
		return fmt.Errorf("the repository's %s changed", name)
	case !w.work && mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		return errors.New("a watched directory of the repository's records or configuration was moved or removed")
	case !w.work:
		return nil
	case name == "" && mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) == 0:
		return nil // the directory's own attributes: git keeps none of a directory's
	}
	rel := path.Join(w.rel, name)
	isDir := mask&unix.IN_ISDIR != 0
	switch {
	case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		if w.rel == "" {
			return errors.New("the repository was moved or removed")
		}
		return nil // its parent says so
	case name == ".gitignore":
		return fmt.Errorf("the ignore rules of %s changed", orTop(w.rel))
	case name == ".git" && w.rel == "":
		if mask&unix.IN_ATTRIB != 0 {
			return nil
		}
		return errors.New("the repository's .git was replaced")
	case name == ".git":
		rel = w.rel // a repository of its own appeared or went: its directory is read again
	case isDir && mask&unix.IN_MOVED_FROM != 0:
		return fmt.Errorf("directory %s was renamed", rel)
	case isDir && mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		s.mu.Lock()
		err := s.addTree(rel, nil)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.changes[rel] = s.seq
	if len(s.changes) > 10*s.MaxChanges {
		return fmt.Errorf("more than %d paths changed", 10*s.MaxChanges)
	}
	return nil
}

func orTop(rel string) string {
	if rel == "" {
		return "the top level"
	}
	return rel
}

// end ends the watcher for err (the first reason given stays).
func (s *Server) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		s.ended = err
		close(s.done)
	}
}

// answer replies to one session: the scan, with the paths changed since the last answer read
// again.
func (s *Server) answer(ctx context.Context, conn *net.UnixConn) {
	go func() {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(queryTimeout))
		reply := func(a Answer) { _ = json.NewEncoder(conn).Encode(a) }
		if err := peerIsThisUser(conn); err != nil {
			reply(Answer{Error: err.Error()})
			return
		}
		var req request
		if err := json.NewDecoder(conn).Decode(&req); err != nil {
			return
		}
		if req.Repo != s.Repo {
			reply(Answer{Error: fmt.Sprintf("this watcher watches %s, not %s", s.Repo, req.Repo)})
			return
		}
		a, err := s.current(ctx)
		if err != nil {
			s.end(err)
			reply(Answer{Error: err.Error()})
			return
		}
		reply(a)
	}()
}

// current is the scan brought up to date: the paths changed so far read again and merged.
func (s *Server) current(ctx context.Context) (Answer, error) {
	s.queries.Lock()
	defer s.queries.Unlock()
	if err := s.drain(); err != nil {
		return Answer{}, err
	}
	if err := s.same(); err != nil {
		return Answer{}, err
	}
	s.reading.Lock()
	err := s.changed()
	s.reading.Unlock()
	if err != nil {
		return Answer{}, err
	}
	if err := s.noMounts(); err != nil {
		return Answer{}, err
	}
	s.mu.Lock()
	stale := s.stale
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	if stale {
		if err := s.readAgain(ctx); err != nil {
			return Answer{}, err
		}
	}
	s.mu.Lock()
	if s.ended != nil {
		defer s.mu.Unlock()
		return Answer{}, s.ended
	}
	upTo := s.seq
	paths := widen(s.changes, s.tracked, s.scan.Entries)
	s.mu.Unlock()
	if len(paths) > s.MaxChanges {
		return Answer{}, fmt.Errorf("more than %d paths changed", s.MaxChanges)
	}
	var read []repocopy.Entry
	if len(paths) > 0 {
		var err error
		if read, err = repocopy.ReadChanged(ctx, s.Git, s.Repo, paths); err != nil {
			return Answer{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return Answer{}, s.ended
	}
	s.scan = s.scan.Merge(paths, read)
	maps.DeleteFunc(s.changes, func(_ string, seq uint64) bool { return seq <= upTo })
	return Answer{Scan: s.scan, Changed: paths}, nil
}

// readAgainSoon reads the repository in full again once what is tracked changed and a moment
// passed without another such change (a commit writes the index, then the branch), so that
// the next session does not wait for it.
func (s *Server) readAgainSoon(ctx context.Context) {
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
		}
		for quiet := false; !quiet; {
			select {
			case <-s.done:
				return
			case <-s.kick:
			case <-time.After(300 * time.Millisecond):
				quiet = true
			}
		}
		s.queries.Lock()
		s.mu.Lock()
		stale := s.stale
		s.mu.Unlock()
		if stale {
			rctx, cancel := context.WithTimeout(ctx, readTimeout)
			if err := s.readAgain(rctx); err != nil {
				s.end(err)
			}
			cancel()
		}
		s.queries.Unlock()
	}
}

// readAgain reads the repository in full again (what is tracked changed), and watches the
// branch HEAD names now. The watcher ends if a directory it does not watch, as ignored by a
// rule, is no longer ignored as a whole (something below it is tracked now).
func (s *Server) readAgain(ctx context.Context) error {
	s.mu.Lock()
	upTo := s.seq
	s.stale = false
	s.mu.Unlock()
	scan, tracked, err := s.readAll(ctx)
	if err != nil {
		return err
	}
	// Another branch may include other configuration (includeIf "onbranch:").
	if files, err := s.configFiles(ctx); err != nil || !slices.Equal(files, s.configs) {
		if err == nil {
			err = errors.New("the configuration files git reads changed with HEAD")
		}
		return err
	}
	s.reading.Lock()
	err = s.watchHead()
	s.reading.Unlock()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scan, s.tracked = scan, tracked
	maps.DeleteFunc(s.changes, func(_ string, seq uint64) bool { return seq <= upTo })
	return nil
}

// noMounts fails when a file system is mounted inside the repository: what it hides, or
// shows, changes without an event.
func (s *Server) noMounts() error {
	m, err := mountsInside(s.Repo)
	if err == nil && len(m) > 0 {
		err = fmt.Errorf("file systems are mounted inside the repository (%s)", strings.Join(m, ", "))
	}
	return err
}

// mountsInside are the mount points below dir (this process's mount table).
func mountsInside(dir string) ([]string, error) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var inside []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// The mount point is field 5, with space, tab, newline and backslash octal-escaped.
		point := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(f[4])
		if strings.HasPrefix(point, dir+"/") {
			inside = append(inside, point)
		}
	}
	return inside, nil
}

// atOrBelowPath reports whether p is dir or below it.
func atOrBelowPath(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// readTimeout bounds reading the repository again for one answer: a path on a file system
// that hangs must not hold every later session.
const readTimeout = 20 * time.Second

// same checks that the repository is still the one watched: a directory above it renamed,
// and another put in its place, raises no event the watcher sees.
func (s *Server) same() error {
	for _, p := range []string{s.Repo, filepath.Join(s.Repo, ".git")} {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		id := fileID(st)
		if s.ids == nil {
			s.ids = map[string][2]uint64{}
		}
		if was, ok := s.ids[p]; !ok {
			s.ids[p] = id
		} else if was != id {
			return fmt.Errorf("%s is another directory than the one watched", p)
		}
	}
	return nil
}

func fileID(st fs.FileInfo) [2]uint64 {
	sys, _ := st.Sys().(*syscall.Stat_t)
	if sys == nil {
		return [2]uint64{}
	}
	return [2]uint64{uint64(sys.Dev), sys.Ino}
}

// widen is the paths to read again for the changes: each at its topmost directory without
// tracked files (git's status shows such a directory as one entry, whatever changed below
// it), none below another.
//
// A staged rename is read again whole when either of its sides is: git's status shows it as
// one entry only when both are read.
func widen(changes map[string]uint64, tracked map[string]bool, entries []repocopy.Entry) []string {
	var out []string
	var renames []string
	for _, e := range entries {
		if e.Kind == "2" && e.Orig != "" {
			renames = append(renames, e.Path, e.Orig)
		}
	}
	all := maps.Clone(changes)
	for i := 0; i+1 < len(renames); i += 2 {
		for p := range changes {
			if atOrBelowPath(renames[i], p) || atOrBelowPath(renames[i+1], p) {
				all[renames[i]], all[renames[i+1]] = 0, 0
			}
		}
	}
	for p := range all {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			if d := strings.Join(parts[:i], "/"); !tracked[d] {
				p = d
				break
			}
		}
		out = append(out, p)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	var kept []string
	for _, p := range out {
		if n := len(kept); n > 0 && atOrBelowPath(p, kept[n-1]) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// peerIsThisUser checks that the other end of conn runs as this process's user.
func peerIsThisUser(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("not a Unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("the repository's watcher socket is held by uid %d, not this user", cred.Uid)
	}
	return nil
}
