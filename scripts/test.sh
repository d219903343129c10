#!/usr/bin/env bash
# One command for the whole test suite, from scratch: install, build, run every test tier.
# Each test starts the real services it needs (etcd, dockerd) on its own ports and namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec npx vitest run
