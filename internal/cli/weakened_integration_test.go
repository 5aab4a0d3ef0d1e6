package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/evidence"
	"github.com/sourceos/sourceosctl/internal/podmantest"
)

// TestIntegrationAServersOwnConfigurationCannotWeakenASession runs real sessions against
// Podman services whose containers.conf changes every container they create — the server's
// owner's settings, applied without the client asking. Each class either is refused before
// the tool starts (exit 3, the field named, the container removed, the tool never ran) or is
// overridden by the plan's explicit settings, which the helper then confirms from inside.
func TestIntegrationAServersOwnConfigurationCannotWeakenASession(t *testing.T) {
	e := podmantest.Need(t)
	w := newWorkspace(t, e, "")
	refused := []struct {
		name, conf, want, by string
	}{
		// Seen by the server's inspect.
		{"a device", `devices = ["/dev/fuse"]`, "device /dev/fuse:/dev/fuse was not planned", "inspect"},
		{"an environment variable", `env = ["LD_PRELOAD=/tmp/x.so"]`, "environment variable LD_PRELOAD was not planned", "inspect"},
		{"a runtime annotation", `annotations = ["run.oci.keep_original_groups=1"]`, "annotation run.oci.keep_original_groups was not planned", "inspect"},
		{"a real-time priority limit", `default_ulimits = ["rtprio=99:99"]`, "ulimit RLIMIT_RTPRIO=99:99 was not planned", "inspect"},
		// Invisible to Podman 4.3's inspect: only the helper sees them.
		{"a volume of a host directory", `volumes = ["/etc:/hostetc:ro"]`, "mount /hostetc (ext4) was not planned", "inside"},
		{"the host's time zone file", `tz = "local"`, "mount /etc/localtime", "inside"},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			weak := e.Weakened(t, tt.conf)
			f, out, errOut := sessionFactory(t, weak, w, nil)
			marker := filepath.Join(w.repo, "tool-ran-"+strings.ReplaceAll(tt.name, " ", "-"))
			code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "touch", "/workspace/"+filepath.Base(marker))
			if code != ExitRefused || !strings.Contains(errOut.String(), tt.want) || !strings.Contains(errOut.String(), "containers.conf") {
				t.Fatalf("exit %d, want %d naming %q and containers.conf\nstdout:\n%s\nstderr:\n%s", code, ExitRefused, tt.want, out, errOut)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the tool ran in the weakened container")
			}
			if strings.Contains(errOut.String(), "sourceos-helper: refused") {
				t.Errorf("the helper's verdict line was shown instead of read:\n%s", errOut)
			}
			if names := sessionContainers(t, e); len(names) != 0 {
				t.Errorf("containers left behind: %v", names)
			}
			p := lastPredicate(t, w)
			if p.Session.Ran || p.Checks == nil {
				t.Fatalf("evidence: ran %v, checks %+v", p.Session.Ran, p.Checks)
			}
			got := p.Checks.Inspect
			diffs := p.Checks.InspectDifferences
			if tt.by == "inside" {
				got, diffs = p.Checks.Inside, p.Checks.InsideDifferences
				if p.Checks.Inspect != "as-planned" {
					t.Errorf("evidence: inspect %q, want as-planned (Podman 4.3 does not show %s)", p.Checks.Inspect, tt.name)
				}
			}
			if want := map[string]string{"inspect": "differs", "inside": "refused"}[tt.by]; got != want || !strings.Contains(strings.Join(diffs, "; "), tt.want) {
				t.Errorf("evidence: %s check %q %v, want %q naming %q", tt.by, got, diffs, want, tt.want)
			}
		})
	}

	// Settings the plan asks for explicitly, so the server's default never applies: the
	// session runs, and the kernel's view from inside is the hardened one.
	overridden := []string{
		`seccomp_profile = "unconfined"`, `ipcns = "host"`, `utsns = "host"`, `pidns = "host"`, `netns = "host"`,
		`umask = "0000"`, `shm_size = "2g"`, `default_capabilities = ["SYS_ADMIN", "NET_RAW"]`,
		`default_sysctls = ["net.ipv4.ping_group_range=0 2147483647"]`, `env_host = true`, `privileged = true`,
		`read_only = false`, `pids_limit = 0`, `init = false`,
	}
	script := `grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status; echo "umask=$(umask) host=$(hostname) shm=$(df -k /dev/shm | awk 'NR==2{print $2}') net=$(ls /sys/class/net | tr '\n' ' ')"; ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 && echo ping=yes || echo ping=no; touch /root-probe 2>/dev/null && echo root=rw || echo root=ro`
	for _, conf := range overridden {
		t.Run("overridden/"+conf, func(t *testing.T) {
			weak := e.Weakened(t, conf)
			f, out, errOut := sessionFactory(t, weak, w, nil)
			if code := run(t, f, "--profile", w.profile, "am", "shell", "--repo", w.repo, "--", "sh", "-c", script); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
				"umask=0022 host=sourceos-agent shm=65536 net=lo \n", "ping=no", "root=ro"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("inside the container: want %q in\n%s", want, out)
				}
			}
			if c := lastPredicate(t, w).Checks; c == nil || c.Inspect != "as-planned" || c.Inside != "passed" {
				t.Errorf("evidence checks = %+v, want inspect as-planned, inside passed", c)
			}
		})
	}
}

// lastPredicate reads the newest evidence bundle's predicate (unverified: the evidence
// tests verify signatures; these read what was recorded).
func lastPredicate(t *testing.T, w *workspace) *evidence.Predicate {
	t.Helper()
	bundles, err := evidence.List(w.evidenceDir()) // newest first
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no evidence in %s: %v", w.evidenceDir(), err)
	}
	items, _, err := evidence.Inspect(bundles[0], nil)
	if err != nil || len(items) != 1 || items[0].Predicate == nil {
		raw, _ := json.Marshal(items)
		t.Fatalf("inspect the newest bundle: %v %s", err, raw)
	}
	return items[0].Predicate
}
