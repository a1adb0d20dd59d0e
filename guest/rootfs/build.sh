#!/usr/bin/env bash
# Builds the guest initramfs: a gzip newc cpio with INIT (the agent) as /init and busybox-static for
# /bin/sh and the usual tools.   build.sh INIT OUT.cpio.gz [EXTRA_FILE:GUEST_PATH ...]
set -euo pipefail
init=${1:?usage: build.sh INIT OUT [FILE:PATH ...]}
out=${2:?usage: build.sh INIT OUT [FILE:PATH ...]}
shift 2
busybox=$(command -v busybox) || { echo "rootfs: busybox-static not installed" >&2; exit 1; }
if file -L "$busybox" 2>/dev/null | grep -q dynamically; then
  [ -x /bin/busybox ] && ! file -L /bin/busybox | grep -q dynamically && busybox=/bin/busybox || {
    echo "rootfs: $busybox is dynamically linked; install busybox-static" >&2; exit 1; }
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,etc,root}
install -m 0755 "$init" "$stage/init"
install -m 0755 "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done
for extra in "$@"; do
  src=${extra%%:*} dst=${extra#*:}
  mkdir -p "$stage$(dirname "$dst")"
  install -m 0755 "$src" "$stage$dst"
done
tmp="$out.tmp"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 -n) > "$tmp"
mv "$tmp" "$out"
