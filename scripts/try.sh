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
echo "== A profile for this repository, rendered from the built-in example (nothing is written)"
"$bin" agent-machine init --repo . --dry-run
