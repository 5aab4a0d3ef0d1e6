#!/usr/bin/env bash
# Installs what sourceosctl's build, main job and tests need on Debian or Ubuntu: Podman with
# runc (crun cannot start containers on hosts with hybrid cgroups), catatonit (the --init that
# forwards Ctrl-C to the tool), rootless support (uidmap,
# slirp4netns), busybox-static for the locally built test image, debootstrap for the
# workspace image's root filesystem (no container registry needed), git, curl (both copied into
# the test image), make, and the OpenSSH client and tmux (a workspace's editor access is tested
# with the real ssh and sftp, an interactive shell driven in tmux), and chromium (the browser
# IDE and the evidence report are tested as a browser renders them, headless), and swtpm (a
# TPM 2.0 emulator: the TPM-held evidence key is tested against it), and openssh-server (remote
# Podman over ssh:// is tested against an sshd the test starts on a loopback port; the
# system's own ssh service is left off when this script installed it). Idempotent:
# nothing is installed twice, and apt is not touched when everything is present.
set -euo pipefail

pkgs=(podman runc catatonit uidmap slirp4netns busybox-static debootstrap git curl make ca-certificates openssh-client openssh-server tmux chromium swtpm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    # Only its sshd binary is needed: do not leave a new SSH service listening on this host.
    $sudo systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || $sudo service ssh stop >/dev/null 2>&1 || true
  fi
fi

if ! command -v go >/dev/null; then
  echo "Go 1.26 or newer is needed to build sourceosctl (https://go.dev/dl/)" >&2
  exit 1
fi
echo "✓ $(podman --version), $(runc --version | head -n1), $(go version | cut -d' ' -f3)"
