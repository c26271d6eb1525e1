#!/usr/bin/env bash
# Installs skellab: PREFIX/lib/skellab/{skellab,stdlib/} side by side, linked from PREFIX/bin.
# Usage: scripts/install.sh [--prefix DIR]   (default /usr/local)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/usr/local
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    *) echo "usage: scripts/install.sh [--prefix DIR]" >&2; exit 2 ;;
  esac
done

"$root/scripts/setup.sh"
(cd "$root" && swift build -c release --product skellab)

home="$prefix/lib/skellab"
mkdir -p "$home" "$prefix/bin"
# Copy to temporaries, then rename, so an interrupted install never leaves half a binary.
cp "$root/.build/release/skellab" "$home/.skellab.tmp"
mv -f "$home/.skellab.tmp" "$home/skellab"
rm -rf "$home/.stdlib.tmp"
cp -R "$root/stdlib" "$home/.stdlib.tmp"
rm -rf "$home/stdlib"
mv "$home/.stdlib.tmp" "$home/stdlib"
ln -sf "$home/skellab" "$prefix/bin/skellab"
echo "installed $prefix/bin/skellab (stdlib in $home/stdlib)"
