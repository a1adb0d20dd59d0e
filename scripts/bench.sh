#!/usr/bin/env bash
# Runs the benchmarks and prints their JSON lines. KVM benchmarks run natively where KVM is
# usable, else inside the QEMU TCG harness together with their peer (QEMU -M microvm), so the
# ratios compare like with like.   scripts/bench.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
runs=${1:-5}
"$here/scripts/build.sh" >/dev/null
qemu=$(command -v qemu-system-x86_64)
exec "$here/test/harness/kvm-run.sh" --probe "$build/lib/mimobox-kvm-probe" --assets "$build/guest" \
  --with-exe "$qemu" --with-file /usr/share/qemu/bios-microvm.bin --with-file /usr/share/qemu/qboot.rom \
  --with-file /usr/share/qemu/linuxboot_dma.bin --with-file /usr/share/qemu/kvmvapic.bin \
  -- "$build/bench/boot_bench" "$runs"
