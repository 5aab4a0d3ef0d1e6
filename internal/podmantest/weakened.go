package podmantest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Weakened starts a second service on the Env's storage (its images, its user) whose
// containers.conf sets lines in the [containers] table — the configuration a server's owner,
// or anyone who can write it, uses to change every container the server creates. It stops
// when the test ends. Only the test's own configuration is written: never the user's files.
func (e *Env) Weakened(t testing.TB, containersLines ...string) *Env {
	t.Helper()
	dir, err := os.MkdirTemp("", "sosctl-pw-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &Env{Dir: dir, Socket: filepath.Join(dir, "podman.sock"), logPath: filepath.Join(dir, "service.log"),
		User: e.User, UID: e.UID, GID: e.GID, globalArgs: e.globalArgs, home: e.home}
	if e.User != "" && w.home == "" {
		w.home = filepath.Join(e.Dir, "home") // the same user's storage
	}
	w.URI = "unix://" + w.Socket
	base, err := os.ReadFile(e.confPath())
	if err != nil {
		t.Fatal(err)
	}
	conf := string(base)
	for _, line := range containersLines {
		// A key the test configuration already sets is replaced, not repeated.
		key, _, _ := strings.Cut(line, "=")
		lines := strings.Split(conf, "\n")
		replaced := false
		for i, l := range lines {
			if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == strings.TrimSpace(key) {
				lines[i], replaced = line, true
			}
		}
		conf = strings.Join(lines, "\n")
		if !replaced {
			conf = strings.Replace(conf, "[containers]\n", "[containers]\n"+line+"\n", 1)
		}
	}
	confPath := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kv := range e.ConfEnv {
		if strings.HasPrefix(kv, "CONTAINERS_CONF=") {
			kv = "CONTAINERS_CONF=" + confPath
		}
		w.ConfEnv = append(w.ConfEnv, kv)
	}
	w.chownAll()
	if err := w.startService(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.KillService()
		_ = os.RemoveAll(dir)
	})
	return w
}

func (e *Env) confPath() string {
	for _, kv := range e.ConfEnv {
		if p, ok := strings.CutPrefix(kv, "CONTAINERS_CONF="); ok {
			return p
		}
	}
	return ""
}
