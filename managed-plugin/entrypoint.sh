#!/bin/sh
# The plugin's first process. Docker mounts /proc/sys read-only in a plugin; the daemon writes the
# sysctls of its veths (proxy ARP, forwarding), so it is made writable again (CAP_SYS_ADMIN allows it).
if ! mount -o remount,rw,bind /proc/sys /proc/sys 2>/dev/null && ! mount -o remount,rw /proc/sys 2>/dev/null; then
  echo "calico-libnetwork: /proc/sys is read-only and could not be made writable: containers' veths will lack proxy ARP" >&2
fi
# Node.js flags and environment: DAEMON_NODE_FLAGS and DAEMON_ENVIRONMENT in
# src/adapters/host/installation.ts say why.
export MALLOC_MMAP_THRESHOLD_=131072
exec /usr/bin/node --max-semi-space-size=1 --no-concurrent-recompilation /app/dist/src/daemon/main.js
