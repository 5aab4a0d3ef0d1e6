//go:build ignore

// generate writes podman machine list/inspect outputs for each provider with Podman
// v5.7.0's own types (entities.ListReporter, machine.InspectInfo) and the encoders its CLI
// uses (cmd/podman/machine/list.go: json.MarshalIndent with 4 spaces; inspect.go: an
// encoder with 5-space indent and no HTML escaping), so the bytes are what that podman
// prints. Values follow the examples in Podman's own docs. Run from this directory:
//
//	CGO_ENABLED=0 go run -tags "remote exclude_graphdriver_btrfs containers_image_openpgp" generate.go
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"time"

	"github.com/containers/podman/v5/pkg/domain/entities"
	"github.com/containers/podman/v5/pkg/machine"
	"github.com/containers/podman/v5/pkg/machine/define"
	"github.com/containers/podman/v5/pkg/machine/vmconfigs"
	"go.podman.io/common/pkg/strongunits"
)

type vm struct {
	name, provider string
	state          define.Status
	cpus           uint64
	memMiB, diskGB uint64
	rootful        bool
	windows        bool
	neverUp        bool
}

func main() {
	created := time.Date(2025, 2, 11, 14, 12, 48, 0, time.UTC)
	lastUp := time.Date(2025, 8, 12, 19, 31, 19, 0, time.UTC)
	machines := []vm{
		{"sourceos-agent", "applehv", define.Stopped, 4, 8192, 60, false, false, false},
		{"sourceos-agent", "applehv", define.Running, 4, 8192, 60, false, false, false},
		{"sourceos-agent", "applehv", define.Stopped, 4, 8192, 60, false, false, true},
		{"sourceos-agent", "libkrun", define.Running, 4, 8192, 60, false, false, false},
		{"sourceos-agent", "libkrun", define.Stopped, 4, 8192, 60, false, false, false},
		{"sourceos-agent", "libkrun", define.Stopped, 4, 8192, 60, false, false, true},
		{"sourceos-agent", "qemu", define.Starting, 2, 4096, 30, false, false, false},
		{"sourceos-agent", "wsl", define.Running, 4, 8192, 60, false, true, false},
		{"sourceos-agent", "wsl", define.Stopped, 4, 8192, 60, false, true, false},
		{"sourceos-agent", "wsl", define.Stopped, 4, 8192, 60, false, true, true},
		{"sourceos-agent", "hyperv", define.Stopped, 4, 8192, 60, true, true, false},
		{"sourceos-agent", "hyperv", define.Running, 4, 8192, 60, true, true, false},
		{"sourceos-agent", "hyperv", define.Stopped, 4, 8192, 60, true, true, true},
	}
	for _, m := range machines {
		up := lastUp
		if m.neverUp {
			up = time.Time{} // list prints the zero time: LastUp in JSON is always a time
		}
		list := []entities.ListReporter{{
			Name: m.name, Default: true, Created: created.Format(time.RFC3339Nano), Running: m.state == define.Running,
			Starting: m.state == define.Starting, LastUp: up.Format(time.RFC3339Nano), Stream: "testing", VMType: m.provider,
			CPUs: m.cpus, Memory: strconv.FormatUint(m.memMiB<<20, 10), Swap: "0", DiskSize: strconv.FormatUint(m.diskGB<<30, 10),
			Port: 53298, RemoteUsername: "core", IdentityPath: "/Users/jacksparrow/.local/share/containers/podman/machine/machine",
		}}
		if m.windows {
			list[0].RemoteUsername = "user"
			list[0].IdentityPath = `C:\Users\jack\.local\share\containers\podman\machine\machine`
		}
		suffix := m.provider + "-" + string(m.state)
		if m.neverUp {
			suffix = m.provider + "-never-started"
		}
		b, _ := json.MarshalIndent(list, "", "    ")
		write("list-"+suffix+".json", append(b, '\n'))

		// The API socket lives in the runtime directory; Podman adds a shorter symlink only
		// when the path is longer than define.MaxSocketPathLength (103 bytes). The libkrun
		// machine here has a long temporary directory, so its socket gets one.
		sock := "/var/folders/9r/n3056v597wv2cq8s2j80bdnw0000gn/T/podman/" + m.name + "-api.sock"
		if m.provider == "libkrun" {
			sock = "/var/folders/9r/n3056v597wv2cq8s2j80bdnw0000gn/T/com.example.long-sandboxed-terminal-app/podman/" + m.name + "-api.sock"
		}
		var symlink *string
		if len(sock) > define.MaxSocketPathLength {
			link := "/Users/jacksparrow/.local/share/containers/podman/machine/" + m.name + "/podman.sock"
			symlink = &link
		}
		conn := machine.ConnectionConfig{PodmanSocket: &define.VMFile{Path: sock, Symlink: symlink}}
		configDir := "/Users/jacksparrow/.config/containers/podman/machine/" + m.provider
		if m.windows {
			// Windows has both: the socket (unused by clients) and the named pipe.
			conn = machine.ConnectionConfig{PodmanSocket: &define.VMFile{Path: `C:\Users\jack\AppData\Local\Temp\podman\` + m.name + "-api.sock"},
				PodmanPipe: &define.VMFile{Path: `\\.\pipe\podman-` + m.name}}
			configDir = `C:\Users\jack\.config\containers\podman\machine\` + m.provider
		}
		info := []machine.InspectInfo{{
			ConfigDir: define.VMFile{Path: configDir}, ConnectionInfo: conn, Created: created, LastUp: up, Name: m.name,
			Resources: vmconfigs.ResourceConfig{CPUs: m.cpus, DiskSize: strongunits.GiB(m.diskGB), Memory: strongunits.MiB(m.memMiB), USBs: []define.USBConfig{}},
			SSHConfig: vmconfigs.SSHConfig{IdentityPath: list[0].IdentityPath, Port: 53298, RemoteUsername: list[0].RemoteUsername},
			State:     m.state, UserModeNetworking: m.provider == "wsl", Rootful: m.rootful,
		}}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "     ")
		_ = enc.Encode(info)
		write("inspect-"+suffix+".json", buf.Bytes())
	}
	write("list-empty.json", []byte("[]\n"))
}

func write(name string, b []byte) {
	if err := os.WriteFile(name, b, 0o644); err != nil {
		panic(err)
	}
}
