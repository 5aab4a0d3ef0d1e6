//go:build unix

package gitrun

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/sourceos/sourceosctl/internal/fileowner"
)

func euid() int { return os.Geteuid() }

// asOwner makes cmd run as repo's owner when that is another user: possible only for root.
func asOwner(cmd *exec.Cmd, repo string) error {
	uid, gid, ok := fileowner.Of(repo)
	if !ok || uid == os.Geteuid() {
		return nil
	}
	if os.Geteuid() != 0 {
		return ErrAnotherUser
	}
	home := "/"
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.HomeDir != "" {
		home = u.HomeDir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}}
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		// Root's own locations would be read as the owner (permission denied) or, worse,
		// written: the owner's defaults apply instead.
		if k, _, _ := strings.Cut(kv, "="); k == "HOME" || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	return nil
}
