#!/usr/bin/env bash
# CI: the README's first command (scripts/try.sh), each time from a fresh clone — as root,
# then as the unprivileged test user in a login without XDG_RUNTIME_DIR (what `su -`, SSH
# without pam_systemd, WSL without systemd or a container give). The second run reuses the
# workspace images the first built: they are handed over with `podman save | podman load`,
# every stage's inputs label matches, so its `image build` builds nothing and needs no root.
# What each run started in the background (the Podman API service) is stopped afterwards.
set -euo pipefail
user="$1"
src="$(cd "$(dirname "$0")/.." && pwd)"
home=$(getent passwd "$user" | cut -d: -f6)
images=(localhost/sourceos/agent-rootfs:bookworm localhost/sourceos/agent-base:bookworm localhost/sourceos/agent-workspace:latest)
as_user=(runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" LANG=C.UTF-8 TERM=dumb
  PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
root_clone=$(mktemp -d /tmp/sosctl-main-root-XXXX)
chmod 755 "$root_clone" # as a clone in a home directory would be
user_clone="$home/sourceosctl-main-job"

stop_service() { # the API service `start` spawned, recorded in the state directory
  local pidfile="$1/.local/state/sourceos/agent-machine/podman-service.pid"
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
}
cleanup() {
  stop_service /root
  stop_service "$home"
  pkill -KILL -u "$user" 2>/dev/null || true # the rootless pause process; nothing else of the user runs yet
  rm -rf "$root_clone" "$user_clone"
}
trap cleanup EXIT

start=$(date +%s)
echo "== README main job as root, from a fresh clone"
git clone -q "$src" "$root_clone"
(cd "$root_clone" && ./scripts/try.sh)
root_done=$(date +%s)

echo
echo "== handing the workspace images to $user (podman save | podman load, one image at a time:"
echo "   Podman 4.3 gives every name in a multi-image archive to its first image)"
for image in "${images[@]}"; do
  podman save "$image" | "${as_user[@]}" podman load -q
done
loaded=$(date +%s)

echo
echo "== README main job as $user: no XDG_RUNTIME_DIR, a fresh clone of its own"
git clone -q "$src" "$user_clone"
chown -R "$user:" "$user_clone"
"${as_user[@]}" bash -c "cd '$user_clone' && test -z \"\${XDG_RUNTIME_DIR:-}\" && ./scripts/try.sh"
end=$(date +%s)
echo
echo "main jobs: root $((root_done - start)) s, image hand-over $((loaded - root_done)) s, $user $((end - loaded)) s"
