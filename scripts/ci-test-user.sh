#!/usr/bin/env bash
# Creates the unprivileged user the integration tests run rootless Podman as (CI runs as
# root, where only rootful Podman would otherwise be tested). Idempotent. Prints the name.
set -euo pipefail
user="${1:-sosctl-test}"
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
# No password, but not locked: sshd (without PAM) refuses a locked account even with a key
# — the remote Podman test logs in as this user with a key.
usermod -p '*' "$user"
for f in /etc/subuid /etc/subgid; do
  grep -q "^$user:" "$f" 2>/dev/null || echo "$user:300000:65536" >> "$f"
done
echo "$user"
