package podman_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/machine"
	"github.com/sourceos/sourceosctl/internal/podman"
)

// scripted answers podman commands from files, keyed by the provider they ran with and their
// arguments; a value starting with "error:" is a failure whose text is the named file's
// (podman's standard error, as ExecRunner reports it).
type scripted struct {
	answers map[string]string // "PROVIDER|ARGS" -> file
	calls   []string
}

func (s *scripted) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return s.RunEnv(ctx, nil, name, args...)
}

func (s *scripted) RunEnv(_ context.Context, env []string, _ string, args ...string) ([]byte, error) {
	provider := ""
	for _, e := range env {
		provider = strings.TrimPrefix(e, machine.ProviderEnv+"=")
	}
	key := provider + "|" + strings.Join(args, " ")
	s.calls = append(s.calls, key)
	file, ok := s.answers[key]
	if !ok {
		return nil, fmt.Errorf("podman %s: exit status 2: stub: unexpected call %q", strings.Join(args, " "), key)
	}
	failing := strings.HasPrefix(file, "error:")
	b, err := os.ReadFile(filepath.Join("testdata", "machines", strings.TrimPrefix(file, "error:")))
	if err != nil {
		return nil, err
	}
	if failing {
		return nil, fmt.Errorf("podman %s: exit status 125: %s", strings.Join(args, " "), strings.TrimSpace(string(b)))
	}
	return b, nil
}

// The refusal recorded from a real Podman 6 pre-release makes the layer ask once per provider,
// with the provider in the environment, and remember it; the real connection lists (Podman
// 4.6 on qemu, Podman 5 docs on applehv) give the session's endpoint on Windows.
func TestMachinesOnRealRecordedOutputs(t *testing.T) {
	for _, tc := range []struct {
		name, connections, wantURI string
	}{
		{"podman 4.6 qemu connection list", "real/connections-qemu-podman4.6.json", "ssh://core@127.0.0.1:65489/run/user/502/podman/podman.sock"},
		{"podman 5 docs applehv connection list", "real/connections-applehv-podman5.x-docs.json", "ssh://core@127.0.0.1:53298/run/user/501/podman/podman.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{answers: map[string]string{
				"|machine list --all-providers --format json": "error:real/error-list-all-providers-podman6.0-dev.txt",
				"wsl|machine list --format json":              "list-empty.json",
				"hyperv|machine list --format json":           "list-docs-qemu.json", // its VMType (qemu) names the provider
				"qemu|machine inspect podman-machine-default": "inspect-docs-applehv-running.json",
				"|system connection list --format json":       tc.connections,
			}}
			m := podman.NewMachines(s, func(string) ([]byte, error) { return nil, os.ErrNotExist }, "windows")
			r := podman.Resolver{GOOS: "windows", Runner: s, Getenv: func(string) string { return "" }}
			var ep podman.Endpoint
			for range 2 { // the second resolution must not try the flag again
				var err error
				ep, err = r.MachineEndpoint(t.Context(), m, machine.Ref{Name: "podman-machine-default", Provider: "qemu"})
				if err != nil {
					t.Fatalf("endpoint: %v\ncalls: %q", err, s.calls)
				}
			}
			if ep.URI != tc.wantURI {
				t.Errorf("URI %s, want %s", ep.URI, tc.wantURI)
			}
			refusals := 0
			for _, c := range s.calls {
				if strings.Contains(c, "--all-providers") {
					refusals++
				}
				if strings.HasPrefix(c, "|machine inspect") {
					t.Errorf("inspect ran without the machine's provider: %q", c)
				}
			}
			if refusals != 1 {
				t.Errorf("--all-providers tried %d times, want once (the refusal is remembered): %q", refusals, s.calls)
			}
		})
	}
}

// Every "does not exist" text real Podman versions print is read as absent, not as a failure,
// when inspect races a machine's removal; other errors stay errors.
func TestMachineGetRealErrorTexts(t *testing.T) {
	for _, tc := range []struct {
		file      string
		wantFound bool
		wantErr   string
	}{
		{"real/error-ssh-absent-applehv-podman4.x.txt", false, ""},
		{"real/error-ssh-absent-applehv-podman5.x.txt", false, ""},
		{"real/error-list-hyperv-podman4.8.0-rc1.txt", false, "could not find virtual machine"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s := &scripted{answers: map[string]string{
				"|machine list --all-providers --format json": "list-applehv-stopped.json",
				"applehv|machine inspect sourceos-agent":      "error:" + tc.file,
			}}
			m := podman.NewMachines(s, nil, "darwin")
			_, found, err := m.Get(t.Context(), "sourceos-agent", "applehv")
			if found != tc.wantFound || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("found %v, err %v", found, err)
			}
		})
	}
}

// A list that fails for a reason other than the flag is reported, never retried as if the
// flag had been refused.
func TestMachineListOtherFailure(t *testing.T) {
	s := &scripted{answers: map[string]string{
		"|machine list --all-providers --format json": "error:real/error-list-hyperv-podman4.8.0-rc1.txt",
	}}
	_, err := podman.NewMachines(s, nil, "windows").List(t.Context())
	if err == nil || !strings.Contains(err.Error(), `could not find virtual machine "podman-machine-default"`) || len(s.calls) != 1 {
		t.Errorf("err %v, calls %q", err, s.calls)
	}
}
