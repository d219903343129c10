#!/usr/bin/env bash
# Puts `calicoctl` and `calico-libnetwork` on PATH: symlinks in BIN_DIR (default /usr/local/bin) to
# this tree's built entry points (each starts with `#!/usr/bin/env node`). Run after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${1:-/usr/local/bin}"
root="$(pwd -P)"
mkdir -p "$bin_dir"
for entry in calicoctl:dist/src/cli/main.js calico-libnetwork:dist/src/daemon/main.js; do
  name="${entry%%:*}"
  target="$root/${entry#*:}"
  [ -f "$target" ] || { echo "$target is missing: run npm run build first" >&2; exit 1; }
  chmod 755 "$target"
  ln -sfn "$target" "$bin_dir/$name"
done
echo "calicoctl and calico-libnetwork in $bin_dir point to $root"
