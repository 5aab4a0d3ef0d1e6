package agentmachine

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/guard"
)

func TestVerdictWatch(t *testing.T) {
	pass, refusal := guard.PassLine("n1")+"\n", guard.RefusalLine("n1", []string{"mount /x (ext4) was not planned"})+"\n"
	tests := []struct {
		name    string
		writes  []string
		shown   string
		refused string
	}{
		{"a pass is consumed, the tool's output follows", []string{pass, "tool output\n"}, "tool output\n", ""},
		{"a refusal is read and not shown", []string{refusal}, "", "mount /x (ext4) was not planned"},
		{"a verdict split across writes", []string{pass[:5], pass[5:12], pass[12:] + "out"}, "out", ""},
		{"the tool cannot forge a refusal after the pass", []string{pass, refusal}, refusal, ""},
		{"a refusal for another nonce is the tool's output", []string{guard.RefusalLine("n2", []string{"x"}) + "\n"},
			guard.RefusalLine("n2", []string{"x"}) + "\n", ""},
		{"no helper: the first line is passed on", []string{"exec failed\nmore"}, "exec failed\nmore", ""},
		{"a first line that never ends is passed on", []string{"partial"}, "partial", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var shown bytes.Buffer
			v := &verdictWatch{w: &shown, nonce: "n1"}
			for _, w := range tt.writes {
				if n, err := v.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			v.flush()
			if shown.String() != tt.shown {
				t.Errorf("shown %q, want %q", shown.String(), tt.shown)
			}
			_, diffs := v.result()
			if got := strings.Join(diffs, "; "); got != tt.refused {
				t.Errorf("refused %q, want %q", got, tt.refused)
			}
		})
	}
}

func TestExpectationFollowsTheSpec(t *testing.T) {
	s := container.Spec{User: "1000:1000", Hostname: "sourceos-agent", Umask: "0022", Network: "none",
		Env:     map[string]string{"HOME": "/home/agent"},
		Secrets: []container.Secret{{Name: "s", EnvVar: "ANTHROPIC_API_KEY"}},
		Mounts:  []container.Mount{{Source: "/r", Target: "/workspace"}},
		Tmpfs:   []container.Tmpfs{{Target: "/tmp"}}}
	e := expectation(withHelperMount(s), container.Image{Env: []string{"LANG=C.UTF-8"}}, "n")
	if e.UID != 1000 || e.GID != 1000 || e.Umask != 0o022 || e.Hostname != "sourceos-agent" {
		t.Fatalf("ids/umask/hostname: %+v", e)
	}
	if e.Env["HOME"] != "/home/agent" || e.Env["LANG"] != "C.UTF-8" || e.Env["container"] != "podman" {
		t.Fatalf("env: %v", e.Env)
	}
	if strings.Contains(e.Encode(), "sk-") || !containsAll(e.EnvNames, "ANTHROPIC_API_KEY", "PATH", "HOSTNAME", "TERM") {
		t.Fatalf("env names: %v", e.EnvNames)
	}
	if !containsAll(e.Mounts, "/workspace", "/tmp", container.HelperTarget) || strings.Join(e.Interfaces, ",") != "lo" {
		t.Fatalf("mounts %v, interfaces %v", e.Mounts, e.Interfaces)
	}
}

func withHelperMount(s container.Spec) container.Spec {
	s.Mounts = append(s.Mounts, container.Mount{Source: "/h", Target: container.HelperTarget, ReadOnly: true})
	return s
}

func containsAll(list []string, want ...string) bool {
	have := map[string]bool{}
	for _, x := range list {
		have[x] = true
	}
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}
