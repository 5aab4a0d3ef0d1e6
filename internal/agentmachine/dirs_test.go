package agentmachine

import "testing"

func TestDirsFor(t *testing.T) {
	tests := []struct {
		name string
		goos string
		env  map[string]string
		want Dirs
	}{
		{"linux defaults", "linux", nil, Dirs{"/h/.config/sourceos/agent-machine", "/h/.local/state/sourceos/agent-machine", "/h/.local/share/sourceos/agent-machine"}},
		{"linux XDG", "linux", map[string]string{"XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s", "XDG_DATA_HOME": "/d"}, Dirs{"/c/sourceos/agent-machine", "/s/sourceos/agent-machine", "/d/sourceos/agent-machine"}},
		{"relative XDG is ignored, as the spec says", "linux", map[string]string{"XDG_CONFIG_HOME": "rel"}, Dirs{"/h/.config/sourceos/agent-machine", "/h/.local/state/sourceos/agent-machine", "/h/.local/share/sourceos/agent-machine"}},
		{"macOS", "darwin", map[string]string{"XDG_CONFIG_HOME": "/ignored"}, Dirs{"/h/Library/Application Support/sourceos/agent-machine", "/h/Library/Application Support/state/sourceos/agent-machine", "/h/Library/Application Support/data/sourceos/agent-machine"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DirsFor(tt.goos, func(k string) string { return tt.env[k] }, "/h")
			if got != tt.want {
				t.Fatalf("DirsFor = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNameFromDir(t *testing.T) {
	for in, want := range map[string]string{"/x/My_App": "my-app", "/x/app.v2": "app-v2", "/x/___": "workspace", "/x/--a--": "a"} {
		if got := nameFromDir(in); got != want {
			t.Errorf("nameFromDir(%q) = %q, want %q", in, got, want)
		}
	}
}
