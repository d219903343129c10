#!/usr/bin/env bash
# Builds calico-libnetwork as a managed Docker plugin from this checkout and creates it, disabled, in
# the engine DOCKER_HOST names (docker plugin create). No registry is needed: the plugin's root
# filesystem is made of this machine's own files (the built daemon, its production node_modules,
# Node.js, BIRD, iptables, ipset, iproute2 and busybox, each binary with the shared libraries ldd
# lists), plus managed-plugin/config.json. Push it from there (docker plugin push) to install it elsewhere.
#   bash scripts/build-plugin.sh [NAME[:TAG]]      (default calico-libnetwork:latest)
# DOCKER names the docker CLI to use (default: docker on PATH). NO_BUILD=1 takes dist/ as it is
# instead of running `npm run build` first (the tests do: a build rewrites dist/ in place, under the
# other tests that are loading it at the same time).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-calico-libnetwork:latest}
docker=${DOCKER:-docker}

for tool in node bird birdc iptables ipset ip busybox ldd ldconfig; do
  command -v "$tool" >/dev/null || { echo "build-plugin: $tool is missing here (bash scripts/install-deps.sh installs it)" >&2; exit 1; }
done

[ "${NO_BUILD:-}" = 1 ] || npm run build --silent
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{app,tmp,run,etc,usr} && chmod 1777 "$root/tmp"
# The host's layout (merged /usr on Debian 12): tools find their files (iptables its extensions) where they were built to look.
for dir in bin sbin lib lib64; do
  if [ -L "/$dir" ]; then ln -s "$(readlink "/$dir")" "$root/$dir"; mkdir -p "$root/$(readlink -f "/$dir")"; else mkdir -p "$root/$dir"; fi
done

# Every shared library a binary loads, at its own path.
copy_libs() {
  local lib
  for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$root$lib" ] || cp -L --parents "$lib" "$root"
  done
}

# Binaries at their own paths (symlinks followed), with their libraries.
copy_with_libs() {
  local file
  for file in "$@"; do
    cp -L --parents "$file" "$root"
    copy_libs "$file"
  done
}

# The daemon: its build, its package.json (its version), and only the packages it runs with.
mkdir -p "$root/app/dist" && cp -r dist/src dist/plugin-spec "$root/app/dist/"
cp package.json "$root/app/"
# package-lock.json names them (npm ls would need a complete, unlinked node_modules).
node -e '
  const lock = require("./package-lock.json");
  for (const [path, entry] of Object.entries(lock.packages))
    if (path.startsWith("node_modules/") && !path.includes("/node_modules/", 1) && !entry.dev) console.log(path);
' | while read -r package; do
  [ -e "$package" ] || continue
  mkdir -p "$root/app/$(dirname "$package")"
  cp -rL "$package" "$root/app/$package"
done
# Native bindings (netlink's) load libraries too.
find "$root/app/node_modules" -name '*.node' | while read -r binding; do copy_libs "$binding"; done

# Node.js, BIRD, iproute2, ipset, and iptables (both IPv4 and IPv6 tools, with their extensions):
# the host's own builds, so the plugin writes the same iptables backend the host uses.
copy_with_libs "$(command -v node)" "$(command -v bird)" "$(command -v birdc)" "$(command -v ip)" "$(command -v ipset)"
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  copy_with_libs "$(command -v "$tool")"
done
extensions=$(dirname "$(ldd "$(command -v iptables)" | grep -o '/[^ ]*libxtables[^ ]*' | head -1)")/xtables
[ -d "$extensions" ] && copy_with_libs "$extensions"/*.so
[ -d /etc/iproute2 ] && cp -r --parents /etc/iproute2 "$root"
# A shell and the small tools the daemon's command helper and the entrypoint use.
cp -L "$(command -v busybox)" "$root/bin/busybox"
for applet in $(busybox --list); do [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"; done
ldconfig -r "$root" 2>/dev/null || true

cp managed-plugin/entrypoint.sh "$root/entrypoint.sh" && chmod 755 "$root/entrypoint.sh"
cp managed-plugin/config.json "$work/config.json"

"$docker" plugin create "$name" "$work"
