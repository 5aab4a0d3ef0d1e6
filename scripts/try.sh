#!/usr/bin/env bash
# The README's first command: install what is missing, build sourceosctl, build the default
# workspace image, and run governed sessions on this repository with the built-in default
# profile, then show the evidence they left and the session log that holds it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
make build
bin=./bin/sourceosctl
"$bin" --version

# Hosts with hybrid cgroups cannot start containers with crun, and a low hard limit on open
# files makes Podman's default ulimits fail. Then this script (never sourceosctl) points
# Podman at its own containers.conf for this run; your files are not touched.
hard_nofile=$(ulimit -Hn)
if [ -d /sys/fs/cgroup/unified ] || { [ "$hard_nofile" != unlimited ] && [ "$hard_nofile" -lt 1048576 ]; }; then
  conf="$PWD/.try/containers.conf"
  mkdir -p .try
  n=$([ "$hard_nofile" = unlimited ] && echo 65536 || echo $((hard_nofile < 65536 ? hard_nofile : 65536)))
  p=$(ulimit -Hu); p=$([ "$p" = unlimited ] && echo 4096 || echo $((p < 4096 ? p : 4096)))
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' "$n" "$n" "$p" "$p" >"$conf"
  export CONTAINERS_CONF="$conf"
  echo "note: this host needs runc and ulimits within its hard limits; using $conf for this run"
fi
mkdir -p .try
echo
echo "== Make sure the Podman API is up (starts a service only when none answers)"
"$bin" agent-machine start
echo
echo "== Is this workstation ready? (read-only; exit code 1 when a check fails)"
"$bin" agent-machine doctor --repo . || echo "(doctor exited $?: see the fix lines above)"
echo
echo "== Build the default workspace image (debootstrap + npm; a few minutes the first time, seconds after)"
ca=()
for c in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$c" ] && ca+=(--ca-cert "$c")
done
((${#ca[@]})) && echo "note: trusting this host's extra CA certificates inside the image: ${ca[*]}"
first_stage() { "$bin" agent-machine image build --dry-run -o json ${ca[@]+"${ca[@]}"} | sed -n 's/^ *"action": "\(.*\)",*$/\1/p' | head -n1; }
if [ "$(id -u)" -eq 0 ] || [ "$(first_stage)" = reuse ]; then
  # As root, or when the root filesystem stage is already in your storage (same mirror and
  # suite): nothing here needs root.
  "$bin" agent-machine image build ${ca[@]+"${ca[@]}"}
else
  # debootstrap needs root; the image itself goes to your rootless Podman.
  echo "note: debootstrap needs root: running it with sudo, then building the image in your rootless Podman"
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  rootfs=.try/rootfs.tar
  if [ ! -f "$rootfs" ]; then
    sudo debootstrap --variant=minbase --include=ca-certificates,passwd bookworm .try/rootfs "${mirror:-http://deb.debian.org/debian}"
    sudo tar --sort=name --numeric-owner -C .try/rootfs -cf "$rootfs" . && sudo chown "$(id -u)" "$rootfs" && sudo rm -rf .try/rootfs
  fi
  "$bin" agent-machine image build --rootfs "$rootfs" ${ca[@]+"${ca[@]}"}
fi
profile=()
if [ "$(id -u)" -ne 0 ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  # Rootless Podman on cgroups v1 cannot enforce limits: sourceosctl refuses such sessions
  # unless the profile accepts that, and the plan and evidence then say the limits are off.
  printf 'apiVersion: sourceos.dev/v1alpha1\nkind: AgentMachineProfile\nmetadata: {name: try-rootless-cgroups-v1}\nspec:\n  host: {os: linux}\n  image: {ref: localhost/sourceos/agent-workspace:latest}\n  tools: {claude-code: {enabled: true}, codex: {enabled: true}}\n  network: gateway\n  resources: {enforce: best-effort}\n' >.try/profile.yaml
  profile=(--profile .try/profile.yaml)
  echo "note: rootless Podman on cgroups v1 cannot enforce limits; this run uses .try/profile.yaml (resources.enforce: best-effort)"
fi
echo
echo "== What a governed session on this repository will do (nothing is created)"
"$bin" agent-machine run ${profile[@]+"${profile[@]}"} --tool codex --repo . --dry-run
echo
echo "== Governed sessions on this repository (built-in default profile: no secrets, no network but the egress gateway)"
log=.try/sessions.log
"$bin" agent-machine shell ${profile[@]+"${profile[@]}"} --repo . -- git log -1 --format='last commit: %h %s' 2> >(tee "$log" >&2)
"$bin" agent-machine run ${profile[@]+"${profile[@]}"} --tool codex --repo . -- --version 2> >(tee -a "$log" >&2)
"$bin" agent-machine run ${profile[@]+"${profile[@]}"} --tool claude-code --repo . -- --version 2> >(tee -a "$log" >&2)
echo
echo "== Egress: a host the policy does not allow is refused by the session's gateway, with the reason, and recorded"
"$bin" agent-machine shell ${profile[@]+"${profile[@]}"} --repo . -- curl -sS -o /dev/null https://example.com 2> >(tee -a "$log" >&2) ||
  echo "(exit code $?: curl did not reach example.com)"
sleep 0.2
bundle=$(sed -n 's/^evidence: //p' "$log" | tail -n1)
echo
echo "== The evidence the last session left, verified with this host's evidence key"
"$bin" agent-machine evidence verify "$bundle" --key "${XDG_CONFIG_HOME:-$HOME/.config}/sourceos/agent-machine/keys/evidence.pub"
"$bin" agent-machine evidence inspect "$bundle"
echo
echo "== The session log: every bundle of this host's evidence directory, in the order sessions ended"
"$bin" agent-machine evidence log verify || echo "(exit code $?: the problems above are in this host's evidence directory)"
echo
echo "== A refused request: mounting your home directory (exit code 3, nothing created)"
"$bin" agent-machine shell --repo ~ --dry-run || echo "(exit code $?)"
