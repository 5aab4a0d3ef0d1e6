package agentmachine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sourceos/sourceosctl/internal/atomicfile"
	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/profile"
	"github.com/sourceos/sourceosctl/internal/tool"
)

// Editor access to a workspace (docs/design/workspaces.md): an SSH client's ProxyCommand runs
// sourceosctl, which speaks SSH on its standard input and output (gliderlabs/ssh over
// golang.org/x/crypto/ssh) and turns each channel into a join of the workspace — a shell or a
// command (with a terminal and its window changes), the sftp subsystem (sourceos-sftp inside
// the container) and local port forwarding to the container's loopback (sourceos-helper
// connect inside) — each checked and recorded as any join is. No sshd in the image, no port
// published; agent and remote forwarding, X11 and the client's environment are not passed on.

// SSHFiles are a workspace's SSH keys, made at its first up and kept until rm: the host key
// the proxy presents, the one client key it accepts, and the known_hosts line that pins the
// host key for the SSH host alias.
type SSHFiles struct {
	Dir        string
	HostKey    string // host_ed25519 (OpenSSH private key)
	Identity   string // id_ed25519, the client's (OpenSSH private key)
	Authorized string // id_ed25519.pub
	KnownHosts string // known_hosts
	Alias      string // the SSH host name: sourceos-NAME
}

// SSHHost is the SSH host alias of a workspace.
func SSHHost(name string) string { return "sourceos-" + name }

// WorkspaceSSH are the paths of a workspace's SSH keys.
func (d Dirs) WorkspaceSSH(name string) SSHFiles {
	dir := filepath.Join(d.WorkspacesDir(), name+".ssh")
	return SSHFiles{Dir: dir, HostKey: filepath.Join(dir, "host_ed25519"), Identity: filepath.Join(dir, "id_ed25519"),
		Authorized: filepath.Join(dir, "id_ed25519.pub"), KnownHosts: filepath.Join(dir, "known_hosts"), Alias: SSHHost(name)}
}

// ensureKeys makes the keys that are missing (ed25519; private keys 0600 in a 0700
// directory). Existing ones are kept: an editor's known host stays valid across down and up.
func (f SSHFiles) ensureKeys() error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(f.Dir, 0o700); err != nil {
		return err
	}
	hostPub, err := ensureKey(f.HostKey, "")
	if err != nil {
		return err
	}
	if _, err := ensureKey(f.Identity, f.Authorized); err != nil {
		return err
	}
	line := f.Alias + " " + strings.TrimSpace(string(gossh.MarshalAuthorizedKey(hostPub))) + "\n"
	return atomicfile.Write(f.KnownHosts, []byte(line), 0o600, atomicfile.Options{})
}

// ensureKey reads the private key at path, or makes one (and its public key at pubPath).
func ensureKey(path, pubPath string) (gossh.PublicKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		signer, err := gossh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (remove it to have a new one made)", path, err)
		}
		return signer.PublicKey(), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := gossh.MarshalPrivateKey(priv, "sourceosctl workspace")
	if err != nil {
		return nil, err
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if pubPath != "" {
		if err := atomicfile.Write(pubPath, gossh.MarshalAuthorizedKey(sshPub), 0o644, atomicfile.Options{}); err != nil {
			return nil, err
		}
	}
	return sshPub, atomicfile.Write(path, pem.EncodeToMemory(block), 0o600, atomicfile.Options{})
}

// SSHConfig is the OpenSSH client configuration of a workspace's host alias: the proxy
// command (sourceosctl's own argv), the workspace's key and known host, and nothing
// forwarded.
func SSHConfig(files SSHFiles, proxy []string, user string) string {
	var quoted []string
	for _, a := range proxy {
		quoted = append(quoted, sshQuote(a))
	}
	return fmt.Sprintf(`Host %s
  HostName %s
  User %s
  ProxyCommand %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  ForwardAgent no
  ForwardX11 no
`, files.Alias, files.Alias, user, strings.Join(quoted, " "), sshQuote(files.Identity), sshQuote(files.KnownHosts))
}

// sshQuote quotes a word for ssh_config (double quotes; % is ssh's escape for tokens).
func sshQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\#") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// ServeSSH speaks SSH on conn (the ProxyCommand's standard input and output) for the
// running workspace w until the client disconnects, then waits (bounded) for the joins
// still recording.
func (s *Session) ServeSSH(ctx context.Context, p *profile.Profile, w *Workspace, conn net.Conn) error {
	if !w.Running() {
		return &WorkspaceDownError{Name: w.Name, Why: "it is down"}
	}
	files := s.Dirs.WorkspaceSSH(w.Name)
	hostKey, err := os.ReadFile(files.HostKey)
	if err != nil {
		return fmt.Errorf("workspace %s has no SSH host key (bring it up again): %w", w.Name, err)
	}
	signer, err := gossh.ParsePrivateKey(hostKey)
	if err != nil {
		return fmt.Errorf("%s: %w", files.HostKey, err)
	}
	authorized, err := os.ReadFile(files.Authorized)
	if err != nil {
		return err
	}
	allowed, _, _, _, err := gossh.ParseAuthorizedKey(authorized)
	if err != nil {
		return fmt.Errorf("%s: %w", files.Authorized, err)
	}
	px := &sshProxy{s: s, p: p, w: w, ctx: ctx}
	srv := &ssh.Server{
		Handler: px.session,
		PublicKeyHandler: func(_ ssh.Context, key ssh.PublicKey) bool {
			return ssh.KeysEqual(key, allowed)
		},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{"sftp": px.sftp},
		ChannelHandlers:   map[string]ssh.ChannelHandler{"session": ssh.DefaultSessionHandler, "direct-tcpip": px.directTCPIP},
		ConnectionFailedCallback: func(_ net.Conn, err error) {
			px.failed = err
		},
	}
	srv.AddHostKey(signer)
	srv.HandleConn(conn)
	done := make(chan struct{})
	go func() { px.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(sshDrain):
	}
	if px.failed != nil && !errors.Is(px.failed, io.EOF) {
		return fmt.Errorf("ssh: %w", px.failed)
	}
	return nil
}

// sshDrain bounds waiting for joins still running when the client has gone.
const sshDrain = 10 * time.Second

type sshProxy struct {
	s      *Session
	p      *profile.Profile
	w      *Workspace
	ctx    context.Context
	wg     sync.WaitGroup
	failed error
}

// join runs argv in the workspace for one channel: its streams are the channel's, sourceosctl's
// own messages go to the proxy's standard error. It returns the command's exit code (255 when
// it could not run, with the reason on the channel's standard error).
func (px *sshProxy) join(ctx context.Context, argv []string, j Joining, stderr io.Writer) int {
	px.wg.Add(1)
	defer px.wg.Done()
	j.Argv = argv
	_, err := px.s.JoinWith(ctx, px.p, px.w, SessionRequest{Tool: tool.Shell}, j)
	var te *ToolExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &te):
		return te.Code
	}
	fmt.Fprintf(stderr, "sourceosctl: %v\n", err)
	if h, ok := err.(interface{ Hint() string }); ok && h.Hint() != "" {
		fmt.Fprintf(stderr, "  hint: %s\n", h.Hint())
	}
	return 255
}

// session is a shell (no command) or a command, as sshd would run it: through the shell.
func (px *sshProxy) session(sess ssh.Session) {
	argv := []string{"/bin/sh", "-c", sess.RawCommand()}
	if sess.RawCommand() == "" {
		argv, _, _ = commandFor(px.p, SessionRequest{Tool: tool.Shell})
	}
	j := Joining{In: sess, Out: sess, ErrOut: sess.Stderr()}
	if pty, winCh, isPty := sess.Pty(); isPty {
		j.TTY, j.Term, j.ErrOut = true, pty.Term, sess
		sizes := make(chan container.Size, 1)
		go func() {
			defer close(sizes)
			for win := range winCh {
				sizes <- container.Size{Rows: uint16(win.Height), Cols: uint16(win.Width)}
			}
		}()
		j.Resize = sizes
	}
	_ = sess.Exit(px.join(sess.Context(), argv, j, sess.Stderr()))
}

// sftp runs sourceos-sftp inside the container on the channel.
func (px *sshProxy) sftp(sess ssh.Session) {
	if px.w.Plan.SFTP == nil {
		fmt.Fprintln(sess.Stderr(), "sourceosctl: this workspace has no SFTP server (its service is on another machine)")
		_ = sess.Exit(1)
		return
	}
	_ = sess.Exit(px.join(sess.Context(), []string{container.SFTPTarget}, Joining{In: sess, Out: sess, ErrOut: sess.Stderr()}, sess.Stderr()))
}

// directTCPIP relays a local forward (ssh -L) to a port on the container's loopback, through
// sourceos-helper connect inside; any other destination is refused.
func (px *sshProxy) directTCPIP(_ *ssh.Server, _ *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	var d struct {
		DestAddr   string
		DestPort   uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		_ = newChan.Reject(gossh.ConnectionFailed, "malformed forwarding request")
		return
	}
	host := d.DestAddr
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || d.DestPort == 0 || d.DestPort > 65535 {
		_ = newChan.Reject(gossh.Prohibited, "only ports on the workspace's loopback (localhost:PORT) can be forwarded")
		return
	}
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go gossh.DiscardRequests(reqs)
	addr := net.JoinHostPort(host, strconv.Itoa(int(d.DestPort)))
	argv := []string{helperInside(*px.w.Plan.Helper), connectCommand, addr}
	px.join(ctx, argv, Joining{In: ch, Out: ch, ErrOut: ch.Stderr()}, ch.Stderr())
}

// connectCommand is the helper's relay to a port on the container's loopback.
const connectCommand = "connect"

// StdioConn is a net.Conn over a reader and a writer (the ProxyCommand's standard input and
// output).
type StdioConn struct {
	io.Reader
	io.WriteCloser
}

func (StdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (StdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (StdioConn) SetDeadline(time.Time) error      { return nil }
func (StdioConn) SetReadDeadline(time.Time) error  { return nil }
func (StdioConn) SetWriteDeadline(time.Time) error { return nil }
func (c StdioConn) Close() error                   { return c.WriteCloser.Close() }
func (c StdioConn) Read(p []byte) (int, error)     { return c.Reader.Read(p) }
func (c StdioConn) Write(p []byte) (int, error)    { return c.WriteCloser.Write(p) }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }

// WriteSSHConfig puts a workspace's entry into an OpenSSH client configuration file, between
// marker comments, replacing that workspace's earlier entry; the rest of the file is kept as
// it was. The file is replaced whole (never half-written), keeping its mode (0600 when new);
// its directory is made 0700 when missing.
func WriteSSHConfig(path, name, entry string) error {
	begin, end := "# BEGIN sourceosctl workspace "+name, "# END sourceosctl workspace "+name
	old, err := os.ReadFile(path)
	mode := os.FileMode(0o600)
	switch {
	case err == nil:
		if st, serr := os.Stat(path); serr == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	var kept []string
	skipping := false
	for _, line := range strings.SplitAfter(string(old), "\n") {
		switch strings.TrimSpace(line) {
		case begin:
			skipping = true
			continue
		case end:
			if skipping {
				skipping = false
				continue
			}
		}
		if !skipping && line != "" {
			kept = append(kept, line)
		}
	}
	if skipping {
		return fmt.Errorf("%s: %q has no matching %q: fix the file by hand", path, begin, end)
	}
	text := strings.Join(kept, "")
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if text != "" && !strings.HasSuffix(text, "\n\n") {
		text += "\n"
	}
	text += begin + "\n" + entry + end + "\n"
	return atomicfile.Write(path, []byte(text), mode, atomicfile.Options{})
}
