// Package tpmtest starts a TPM 2.0 for tests: Debian's swtpm emulator, serving TPM commands
// on a Unix socket in a temporary directory, with its own fresh state (so its own owner
// hierarchy seed). Outside CI a missing swtpm skips the test; under CI=true it fails it.
package tpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Start runs swtpm and returns the path of its command socket, which tpmkey.Load opens as a
// TPM device. It is stopped at the test's end.
func Start(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm is not installed (scripts/install-deps.sh installs it)")
		}
		t.Skip("swtpm is not installed (CI=true makes this a failure)")
	}
	// Short: a Unix socket's path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "swtpm.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			return sock
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "swtpm.log"))
			t.Fatalf("swtpm exited before serving:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("swtpm did not serve its socket within 10 s")
	return ""
}
