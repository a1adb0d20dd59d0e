#!/usr/bin/env bash
# Builds the guest kernel (bzImage + vmlinux) from Debian's linux-source-6.1 with
# allnoconfig + mimobox.config, caching the result outside the checkout by a hash of
# the fragment, this script and the source package version.
#   guest/kernel/build.sh OUTDIR     -> OUTDIR/bzImage, OUTDIR/vmlinux
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
cache_root=${MIMOBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mimobox}
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "kernel: $tarball missing (run scripts/setup.sh)" >&2; exit 1; }

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( { echo "$src_version"; cat "$here/mimobox.config" "$here/build.sh"; } | sha256sum | cut -c1-16)
cached="$cache_root/kernel/$key"
mkdir -p "$cache_root/kernel" "$out"

exec 9>"$cache_root/kernel/.lock"
flock 9   # two builds at once would double the 10-minute cold build on 2 cores

if [ ! -f "$cached/bzImage" ] || [ ! -f "$cached/vmlinux" ]; then
  echo "kernel: cold build of linux-source $src_version (cache key $key)"
  start=$(date +%s)
  work="$cache_root/kernel/build-$key"
  rm -rf "$work"; mkdir -p "$work"
  tar -C "$work" --strip-components=1 -xf "$tarball"
  make -C "$work" -s KCONFIG_ALLCONFIG="$here/mimobox.config" allnoconfig
  # allnoconfig quietly drops options whose dependencies are unmet: check every one we asked for.
  bad=0
  while IFS= read -r line; do
    case "$line" in CONFIG_*=*) grep -qx "$line" "$work/.config" || { echo "kernel: $line not applied" >&2; bad=1; } ;; esac
  done < "$here/mimobox.config"
  [ "$bad" = 0 ] || exit 1
  make -C "$work" -s -j"$(nproc)" bzImage vmlinux
  mkdir -p "$cached.tmp"
  cp "$work/arch/x86/boot/bzImage" "$work/vmlinux" "$work/.config" "$cached.tmp/"
  rm -rf "$cached"; mv "$cached.tmp" "$cached"
  rm -rf "$work"
  echo "kernel: built in $(( $(date +%s) - start )) s"
else
  echo "kernel: cached ($key)"
fi
cp "$cached/bzImage" "$cached/vmlinux" "$out/"
