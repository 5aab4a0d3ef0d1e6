package agentmachine

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/repocopy"
	"github.com/sourceos/sourceosctl/internal/safeopen"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// CloneHost checks a URL new --git may clone and returns the host:port its session's egress
// allows: http and https only (over SSH the clone would need the user's keys, which never
// enter a container), and no credentials in the URL (they would).
func CloneHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", &InputError{Flag: "--git", Err: fmt.Errorf("%q is not a URL such as https://github.com/org/repo.git", raw)}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", &InputError{Flag: "--git", Err: fmt.Errorf("%s: only http and https URLs are cloned (the clone runs in a governed container, which never holds your SSH keys)", raw),
			Fix: "use the repository's https URL; for a private one add --auth gh (the egress gateway injects the token)"}
	}
	if u.User != nil {
		return "", &InputError{Flag: "--git", Err: fmt.Errorf("%s carries credentials, which would enter the container", u.Redacted()),
			Fix: "leave them out and use --auth (the egress gateway injects them)"}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// cloneScript runs in the clone's container, on its staging directory: a bare clone, the
// remote's default branch, and a bundle of its branches and tags for the host to check.
const cloneScript = `set -e
git clone --bare --quiet -- "$1" src.git
git -C src.git symbolic-ref --short HEAD > HEAD
git -C src.git bundle create --quiet "$PWD/clone.bundle" --branches --tags`

// MakeRepository makes the new project directory dir a repository: git init on this host,
// then, with rawURL, a clone of it (Clone), else an empty first commit.
func (s *Session) MakeRepository(ctx context.Context, p *profile.Profile, dir, rawURL string, auth []string) error {
	if _, err := s.gitrun().Output(ctx, dir, "init", "--quiet"); err != nil {
		return fmt.Errorf("git init %s: %w", dir, err)
	}
	if rawURL == "" {
		// A session's copy and branch start from a commit: the project starts with an empty
		// one, by the user's git identity, or sourceosctl's where none is configured.
		args := []string{"commit", "--quiet", "--allow-empty", "--no-verify", "-m", "Start " + filepath.Base(dir) + " (sourceosctl agent-machine new)"}
		if email, err := s.gitrun().Output(ctx, dir, "config", "user.email"); err != nil || email == "" {
			args = append([]string{"-c", "user.name=sourceosctl", "-c", "user.email=sourceosctl@localhost"}, args...)
		}
		if _, err := s.gitrun().Output(ctx, dir, args...); err != nil {
			return fmt.Errorf("the first commit in %s: %w", dir, err)
		}
		return nil
	}
	fmt.Fprintf(s.IO.ErrOut, "Cloning %s in a governed session (egress: that host only) …\n", rawURL)
	return s.Clone(ctx, p, rawURL, dir, auth)
}

// Clone makes dir — a directory this command created, holding only a repository git init
// made on this host — a clone of rawURL. git clone runs in a governed session (the profile's,
// with direct mode on a staging directory) whose egress allows the URL's host only, plus what
// --auth consents to; what comes back is a bundle, whose objects are checked on their way into
// dir (repocopy.ImportClone). No git runs on the host in anything the container wrote.
func (s *Session) Clone(ctx context.Context, p *profile.Profile, rawURL, dir string, auth []string) error {
	host, err := CloneHost(rawURL)
	if err != nil {
		return err
	}
	if p.Spec.Network.Mode != "gateway" {
		return &InputError{Flag: "--git", Err: fmt.Errorf("the clone reaches %s through the egress gateway, and profile %s has network %s", host, p.Metadata.Name, orDash(p.Spec.Network.Mode)),
			Fix: "use a profile with spec.network.mode: gateway (the embedded default has it) for new --git"}
	}
	// The staging directory is a child of a directory of this process's own (0711): as root,
	// the child is given to the user sessions run as, who can then write it but cannot move
	// it or put anything in its place.
	parent, err := os.MkdirTemp("", "sourceosctl-clone-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o711); err != nil {
		return err
	}
	staging := filepath.Join(parent, "work")
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(staging, fallbackUID, fallbackUID); err != nil {
			return err
		}
	}
	_, err = s.Run(ctx, p, SessionRequest{Tool: tool.Shell, Repo: staging, Scratch: true, AllowHosts: []string{host}, Auth: auth,
		Args: []string{"/bin/sh", "-c", cloneScript, "sourceosctl-clone", rawURL}})
	if err != nil {
		return fmt.Errorf("cloning %s in a governed session: %w", rawURL, err)
	}
	branch, err := readSmallFile(filepath.Join(staging, "HEAD"))
	if err != nil {
		return fmt.Errorf("the clone's default branch: %w", err)
	}
	bundle := filepath.Join(staging, "clone.bundle")
	if err := repocopy.ImportClone(ctx, s.gitrun(), bundle, dir, strings.TrimSpace(branch), rawURL); err != nil {
		return fmt.Errorf("bringing the clone of %s into %s: %w", rawURL, dir, err)
	}
	return nil
}

// readSmallFile reads a short regular file a container wrote, never through a symbolic link.
func readSmallFile(path string) (string, error) {
	f, _, err := safeopen.Regular(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	return string(b), err
}
