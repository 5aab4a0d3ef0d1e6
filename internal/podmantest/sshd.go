package podmantest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SSHD is a throw-away OpenSSH server on a loopback port that lets one user in with one key:
// what a remote Podman host looks like to `--connection ssh://…`.
type SSHD struct {
	Port int
	// Key is the client's private key (OpenSSH format); HostKey the server's public key line.
	Key     string
	HostKey string
	User    string
}

// StartSSHD starts Debian's sshd on 127.0.0.1 for user, with a new host key and a new client
// key, stopped when the test ends. Root runs it for any user; anyone else only for
// themselves. The user's account must not be locked (sshd refuses those without PAM).
func StartSSHD(t testing.TB, user string) *SSHD {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
		if _, serr := os.Stat(sshd); serr != nil {
			t.Fatalf("sshd not found (Debian's openssh-server; scripts/install-deps.sh installs it): %v", err)
		}
	}
	dir, err := os.MkdirTemp("", "sosctl-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{Key: filepath.Join(dir, "client_ed25519"), User: user}
	for _, key := range []string{filepath.Join(dir, "host_ed25519"), s.Key} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sourceosctl-test", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	s.HostKey = strings.TrimSpace(string(hostPub))
	clientPub, err := os.ReadFile(s.Key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, clientPub, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "sshd_config")
	body := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers %s
`, s.Port, filepath.Join(dir, "host_ed25519"), auth, filepath.Join(dir, "sshd.pid"), user)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Getuid() == 0 {
		t.Fatal(err) // its privilege separation directory
	}
	logPath := filepath.Join(dir, "sshd.log")
	cmd := exec.Command(sshd, "-D", "-f", conf, "-E", logPath)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sshd did not listen on port %d:\n%s", s.Port, log)
		}
	}
	// Prove the key works with the real OpenSSH client, so a failure below is sourceosctl's.
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh", "-i", s.Key, "-p", fmt.Sprint(s.Port), "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+known,
		"-o", "StrictHostKeyChecking=yes", user+"@127.0.0.1", "true").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("ssh %s@127.0.0.1 -p %d: %v\n%s\nsshd's log:\n%s", user, s.Port, err, out, log)
	}
	return s
}

// URI is the ssh:// connection to socket (a path on the server) as user.
func (s *SSHD) URI(socket string) string {
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", s.User, s.Port, socket)
}

// KnownHosts is the known_hosts line of the server, for a client that checks it.
func (s *SSHD) KnownHosts() string {
	return fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKey)
}
