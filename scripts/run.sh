#!/usr/bin/env bash
# One command for a new host: install, build, and run the daemon in the foreground.
# With no datastore configured (no ETCD_* variable, no /etc/calico/calicoctl.cfg) the daemon runs its own etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Node.js flags: DAEMON_NODE_FLAGS in src/adapters/host/installation.ts says why.
exec node --max-semi-space-size=1 --no-concurrent-recompilation dist/src/daemon/main.js
