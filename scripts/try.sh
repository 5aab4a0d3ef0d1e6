#!/usr/bin/env bash
# The README's first command: install what is missing, build sourceosctl, and run the main
# job on this repository with the built-in default profile.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
make build
bin=./bin/sourceosctl
"$bin" --version
echo
echo "== Make sure the Podman API is up (starts a service only when none answers)"
"$bin" agent-machine start || echo "(start exited $?: see the hint above)"
echo
echo "== Is this workstation ready? (read-only; exit code 1 when a check fails)"
"$bin" agent-machine doctor --repo . || echo "(doctor exited $?: see the fix lines above)"
echo
echo "== What a governed shell session on this repository would do (built-in default profile, nothing is created)"
"$bin" agent-machine shell --repo . --dry-run
echo
echo "== The same plan as the equivalent podman command line"
"$bin" agent-machine shell --repo . --dry-run -o podman
echo
echo "== A refused request: mounting your home directory (exit code 3, nothing created)"
"$bin" agent-machine shell --repo ~ --dry-run || echo "(exit code $?)"
