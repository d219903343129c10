#!/usr/bin/env bash
# One command for a new host: install, build, and run the daemon in the foreground.
# With no datastore configured (no ETCD_* variable, no /etc/calico/calicoctl.cfg) the daemon runs its own etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Node.js flags and environment: DAEMON_NODE_FLAGS and DAEMON_ENVIRONMENT in
# src/adapters/host/installation.ts say why.
export MALLOC_MMAP_THRESHOLD_=131072
exec node --max-semi-space-size=1 --no-concurrent-recompilation dist/src/daemon/main.js
