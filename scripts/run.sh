#!/usr/bin/env bash
# One command for a new host: install, build, and run the daemon in the foreground.
# With ETCD_ENDPOINTS unset and nothing on 127.0.0.1:2379, the daemon runs its own etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node dist/src/daemon/main.js
