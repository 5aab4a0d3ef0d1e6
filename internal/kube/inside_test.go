package kube

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/sourceos/sourceosctl/internal/container"
)

// procFiles is a container's /proc as `cat` shows it from inside, for a fake exec.
type procFiles map[string]string

func (p procFiles) Exec(_ context.Context, _ string, x container.Exec, _ io.Reader, out, errOut io.Writer) (int, error) {
	content, ok := p[strings.Join(x.Command, " ")]
	if !ok {
		_, _ = io.WriteString(errOut, "no such file")
		return 1, nil
	}
	_, _ = io.WriteString(out, content)
	return 0, nil
}

func governedProc() procFiles {
	return procFiles{
		"cat /proc/1/status": "Name:\tsleep\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1000 \n" +
			"NoNewPrivs:\t1\nSeccomp:\t2\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n",
		"cat /proc/1/mountinfo": "1 0 0:1 / / ro,relatime - overlay overlay rw\n2 1 0:2 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw\n" +
			"3 1 0:3 / /home/agent rw,nosuid,nodev - tmpfs tmpfs rw\n4 1 254:0 /v /workspace rw - ext4 /dev/vda rw\n5 1 0:4 / /proc rw - proc proc rw\n",
		"cat /proc/1/environ":                     "HOME=/home/agent\x00SOURCEOS_AGENT_SESSION=" + testSession + "\x00OPENAI_API_KEY=x\x00PATH=/bin\x00container=podman\x00HOSTNAME=sourceos-agent\x00",
		"cat /proc/1/limits":                      "Limit                     Soft Limit           Hard Limit           Units\nMax nice priority         0                    0\nMax realtime priority     0                    0\n",
		"cat /proc/sys/kernel/hostname":           "sourceos-agent\n",
		"cat /proc/1/net/dev":                     "Inter-|   Receive\n face |bytes\n    lo: 0 0\n",
		"ls -1A /dev":                             "console\nfd\nfull\nmqueue\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n",
		"cat /proc/sys/net/ipv4/ping_group_range": "1\t0\n",
	}
}

func TestInsideReadsTheContainersFirstProcess(t *testing.T) {
	m, err := Decode("pod.yaml", []byte(export(t, testPlan("none"), Options{})))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Pod.Spec.Containers[0]
	img := container.Image{Env: []string{"PATH=/bin"}}
	if d := Inside(context.Background(), governedProc(), "id", m.Pod, c, img); len(d) != 0 {
		t.Fatalf("a governed container: %v", d)
	}
	widen := map[string]func(p procFiles){
		"capabilities CapEff are 00000000a80425fb": func(p procFiles) {
			p["cat /proc/1/status"] = strings.Replace(p["cat /proc/1/status"], "CapEff:\t0000000000000000", "CapEff:\t00000000a80425fb", 1)
		},
		"no-new-privileges is 0": func(p procFiles) {
			p["cat /proc/1/status"] = strings.Replace(p["cat /proc/1/status"], "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1)
		},
		"user is 0:1000": func(p procFiles) {
			p["cat /proc/1/status"] = strings.Replace(p["cat /proc/1/status"], "Uid:\t1000", "Uid:\t0", 1)
		},
		"network interface eth0 was not planned": func(p procFiles) { p["cat /proc/1/net/dev"] += "  eth0: 1 2\n" },
		"mount /etc/localtime": func(p procFiles) {
			p["cat /proc/1/mountinfo"] += "6 1 254:0 /usr/share/zoneinfo/UTC /etc/localtime ro - ext4 /dev/vda rw\n"
		},
		"device /dev/fuse was not planned":      func(p procFiles) { p["ls -1A /dev"] += "fuse\n" },
		"limit rtprio is 99:99":                 func(p procFiles) { p["cat /proc/1/limits"] += "Max realtime priority     99                   99\n" },
		"unprivileged ICMP sockets are allowed": func(p procFiles) { p["cat /proc/sys/net/ipv4/ping_group_range"] = "0\t2147483647\n" },
		"environment variable LD_PRELOAD was not planned": func(p procFiles) {
			p["cat /proc/1/environ"] += "LD_PRELOAD=/tmp/x.so\x00"
		},
		"cannot read /proc/self/status": func(p procFiles) { delete(p, "cat /proc/1/status") },
	}
	for want, edit := range widen {
		p := governedProc()
		edit(p)
		d := Inside(context.Background(), p, "id", m.Pod, c, img)
		if !strings.Contains(strings.Join(d, "; "), want) {
			t.Errorf("%s: %v", want, d)
		}
	}
}
