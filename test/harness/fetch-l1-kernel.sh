#!/usr/bin/env bash
# Fetches Debian's cloud kernel (the harness's L1 host kernel, whose kvm-amd module runs on
# QEMU TCG's emulated SVM) into the cache and prints the directory holding vmlinuz and the
# three modules the harness loads. Idempotent.
set -euo pipefail
cache_root=${MIMOBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mimobox}
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$pkg" ] || { echo "harness: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
dir="$cache_root/harness/$pkg"
if [ ! -f "$dir/ready" ]; then
  rm -rf "$dir"; mkdir -p "$dir/deb"
  (cd "$dir/deb" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2)
  dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
  kver=${pkg#linux-image-}
  cp "$dir/root/boot/vmlinuz-$kver" "$dir/vmlinuz"
  mkdir -p "$dir/modules"
  for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
    f=$(ls "$dir/root/lib/modules/$kver/kernel/$m".ko* | head -n1)
    case "$f" in
      *.xz) xz -dc "$f" > "$dir/modules/$(basename "$m").ko" ;;
      *.zst) zstd -dcq "$f" > "$dir/modules/$(basename "$m").ko" ;;
      *) cp "$f" "$dir/modules/$(basename "$m").ko" ;;
    esac
  done
  rm -rf "$dir/root" "$dir/deb"
  touch "$dir/ready"
fi
echo "$dir"
