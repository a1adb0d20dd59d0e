#!/usr/bin/env bash
# Runs the benchmarks and prints their JSON lines. Benchmarks that need KVM run natively where
# it is usable, else inside the QEMU TCG harness together with their peer (QEMU -M microvm for
# boot, memcpy for vsock and files, the guest's own fork+exec for exec), so every figure is a ratio measured in the same place and run.
#   scripts/bench.sh [BOOT_RUNS] [VSOCK_MIB] [SNAPSHOT_RUNS] [CLONES] [POOL_N]
# POOL_N idle pooled sandboxes (pool_bench); past about 200 raise MIMOBOX_HARNESS_MEMORY_MIB (8192
# held 500; bench/NOTES.md has what stops 1000 in the harness) and MIMOBOX_HARNESS_TIMEOUT.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
runs=${1:-5}
mib=${2:-64}
snapshot_runs=${3:-5}
clones=${4:-20}
pool_n=${5:-50}
"$here/scripts/build.sh" >/dev/null
qemu=$(command -v qemu-system-x86_64)
kvm_run=("$here/test/harness/kvm-run.sh" --probe "$build/lib/mimobox-kvm-probe" --assets "$build/guest")
"${kvm_run[@]}" --with-exe "$qemu" --with-file /usr/share/qemu/bios-microvm.bin --with-file /usr/share/qemu/qboot.rom \
  --with-file /usr/share/qemu/linuxboot_dma.bin --with-file /usr/share/qemu/kvmvapic.bin \
  -- "$build/bench/boot_bench" "$runs"
"$build/bench/vsock_bench" mock 256
"${kvm_run[@]}" -- "$build/bench/vsock_bench" guest "$mib"
"${kvm_run[@]}" -- "$build/bench/sandbox_bench" 50 "$mib"
"${kvm_run[@]}" -- "$build/bench/snapshot_bench" "$snapshot_runs"
"${kvm_run[@]}" -- "$build/bench/clone_bench" "$clones"
"${kvm_run[@]}" -- "$build/bench/pool_bench" "$pool_n"
