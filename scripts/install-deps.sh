#!/usr/bin/env bash
# Installs what calico-libnetwork needs on Debian 12 (run as root): Debian packages, npm packages, then builds.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus: test/metrics.etcd.test.ts runs its own (own port and data dir), never the packaged service.
# docker-registry: test/managed-plugin.docker.test.ts pushes the plugin to one of its own, likewise.
packages=(etcd-server etcd-client docker.io docker-registry iptables ipset iproute2 bird2 busybox-static openssl kmod procps iputils-ping iperf3 prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null || { echo "Node.js 20 or later is required (https://nodejs.org)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
bash scripts/install-commands.sh
