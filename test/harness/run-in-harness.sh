#!/usr/bin/env bash
# Runs one test command inside an L1 VM (qemu-system-x86_64 -accel tcg -cpu max) whose Debian
# cloud kernel loads kvm-amd, so the test gets a working /dev/kvm on a host without one.
#   run-in-harness.sh [--assets DIR] [--timeout SECONDS] [--memory MIB]
#                     [--with-exe PATH]... [--with-file PATH]... -- EXE [ARGS...]
# --with-exe packs another executable (and its libraries) at the same path, --with-file a data file.
# EXE and its shared libraries (from ldd), and the guest assets if given, are packed into the L1
# initramfs. Exit status: the test's own, or 1 when the harness itself fails (QEMU missing, L1
# panic, modules not loading, timeout); then the console tail is printed. Never a skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
assets="" timeout_s=${MIMOBOX_HARNESS_TIMEOUT:-420} memory_mib=${MIMOBOX_HARNESS_MEMORY_MIB:-4096}
extra_exes=() extra_files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --assets) assets=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --memory) memory_mib=$2; shift 2 ;;
    --with-exe) extra_exes+=("$2"); shift 2 ;;
    --with-file) extra_files+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: run-in-harness.sh [--assets DIR] [--timeout S] -- EXE [ARGS...]" >&2; exit 2; }
harness_fail() { echo "harness: FAILED: $*" >&2; exit 1; }

# MIMOBOX_HARNESS_QEMU picks another QEMU binary (test/harness/measure-wedges.sh compares
# builds), MIMOBOX_HARNESS_QEMU_DATADIR its firmware directories (-L each, comma-separated).
qemu=${MIMOBOX_HARNESS_QEMU:-$(command -v qemu-system-x86_64)} || harness_fail "qemu-system-x86_64 not installed (run scripts/setup.sh)"
[ -x "$qemu" ] || harness_fail "$qemu is not an executable"
qemu_datadir=()
IFS=, read -ra dirs <<< "${MIMOBOX_HARNESS_QEMU_DATADIR:-}"
for d in "${dirs[@]}"; do qemu_datadir+=(-L "$d"); done
busybox=$(command -v busybox) || harness_fail "busybox not installed"
file "$busybox" 2>/dev/null | grep -q "dynamically" && harness_fail "$busybox is not static (install busybox-static)"
l1=$("$here/fetch-l1-kernel.sh") || harness_fail "could not fetch the L1 cloud kernel"

exe=$(readlink -f "$1"); shift
[ -x "$exe" ] || harness_fail "$exe is not an executable"
work=$(mktemp -d "${TMPDIR:-/tmp}/mimobox-harness.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,harness/test,harness/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/l1-init.sh" "$root/init"; chmod +x "$root/init"
cp "$l1"/modules/*.ko "$root/harness/modules/"
cp "$exe" "$root/harness/test/"
# An executable's shared libraries, at the paths the dynamic loader will look for them.
pack_libraries() {
  ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
  done
}
pack_libraries "$exe"
for extra in "${extra_exes[@]}" "${extra_files[@]}"; do
  [ -e "$extra" ] || harness_fail "$extra does not exist"
  mkdir -p "$root$(dirname "$extra")"; cp -L "$extra" "$root$extra"
done
for extra in "${extra_exes[@]}"; do pack_libraries "$extra"; done
if [ -n "$assets" ]; then
  mkdir -p "$root/harness/assets"
  find -L "$assets" -maxdepth 1 -type f -exec cp -L {} "$root/harness/assets/" \; || harness_fail "cannot copy assets from $assets"
  [ -n "$(ls "$root/harness/assets")" ] || harness_fail "no assets in $assets"
fi
{
  # The test's own settings cross into the L1 (nothing else of this environment does).
  for var in MIMOBOX_TEST_SCALE; do
    if [ -n "${!var:-}" ]; then printf 'export %s=%q\n' "$var" "${!var}"; fi
  done
  printf 'exec ./%q' "$(basename "$exe")"
  for a in "$@"; do printf ' %q' "$a"; done
  printf '\n'
} > "$root/harness/test/command"
# Uncompressed: gunzip in an emulated L1 costs more than the extra bytes do.
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/l1.cpio" || harness_fail "cpio failed"

console=$work/console.log
echo "harness: L1 = $(basename "$l1") under QEMU TCG ($("$qemu" --version | head -n1 | sed 's/^QEMU emulator version //')), running $(basename "$exe") $*"
heartbeat=$work/heartbeat.log
boot_l1() {
  : > "$console"
  : > "$heartbeat"
  # Own session, so a wedge can be killed with everything it started. tsc=reliable: the L1
  # kernel otherwise finds TCG's TSCs "unsynchronized" and falls back to the HPET, and every
  # clock read on the host side (each timer, each timestamp) becomes an emulated MMIO access
  # instead of a vDSO read. TCG derives every vCPU's TSC from one host clock, so it is sound.
  setsid timeout --signal=KILL "$timeout_s" "$qemu" "${qemu_datadir[@]}" -accel tcg -cpu max -smp 2 -m "$memory_mib" -M q35 \
    -kernel "$l1/vmlinuz" -initrd "$work/l1.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable rdinit=/init mimobox.watchdog=$(( timeout_s - 60 ))" \
    -display none -monitor none -serial "file:$console" -serial "file:$heartbeat" -no-reboot -nodefaults </dev/null &
  local pid=$! last_beat_size=0 last_beat_time
  last_beat_time=$(date +%s)
  # TCG's emulated SVM sometimes wedges the L1 inside KVM_RUN: the L1 kernel then reports a
  # soft lockup. Nothing of ours can cause that (a guest that spins still lets L1 schedule),
  # so stop at the first report instead of waiting out the whole timeout.
  while kill -0 "$pid" 2>/dev/null; do
    if grep -aq 'BUG: soft lockup' "$console" 2>/dev/null; then
      wedged=1
      kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    # No heartbeat for 90 s after the L1 started beating: the whole L1 hangs.
    local size now
    size=$(stat -c %s "$heartbeat" 2>/dev/null || echo 0)
    now=$(date +%s)
    if [ "$size" != "$last_beat_size" ]; then
      last_beat_size=$size last_beat_time=$now
    elif [ "$size" -gt 0 ] && [ $(( now - last_beat_time )) -gt 90 ]; then
      wedged=1
      echo "harness: no L1 heartbeat for 90 s" >&2
      kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    sleep 2
  done
  { wait "$pid"; } 2>/dev/null
}
start=$(date +%s)
wedged=0
boot_l1
qemu_rc=$?
# Such a wedge (about 1 run in 15 here), or a timeout, is the emulator's, not the test's: retry
# once, loudly. A test that really hangs times out twice and fails.
if { [ "$wedged" = 1 ] || [ "$qemu_rc" = 137 ]; } && ! grep -aq 'MIMOBOX_HARNESS_EXIT=' "$console"; then
  echo "harness: L1 $( [ "$wedged" = 1 ] && echo "wedged (soft lockup or no heartbeat)" || echo "timed out after ${timeout_s}s"); console tail, then one retry:" >&2
  tail -n 5 "$console" >&2
  # The VMM's own stall reports (vsock_host's watchdog, MIMOBOX_VSOCK_STALL_LOG_S) say whether
  # the guest or the emulator stopped; the retry overwrites the console, so show them now.
  if grep -aq 'vsock' "$console"; then
    echo "harness: vsock reports of the failed attempt:" >&2
    tr -d '\r' < "$console" | grep -a -A14 -e 'vsock operations pending' -e 'raised again' | head -n 80 >&2
  fi
  start=$(date +%s)
  wedged=0
  boot_l1
  qemu_rc=$?
  [ "$wedged" = 1 ] && qemu_rc=137
fi
elapsed=$(( $(date +%s) - start ))
# Show the test's own output (the L1 console minus harness markers).
tr -d '\r' < "$console" | grep -av -e '^MIMOBOX_HARNESS_' -e 'reboot: Power down' || true
exit_line=$(tr -d '\r' < "$console" | grep -a '^MIMOBOX_HARNESS_EXIT=' | tail -n1)
fail_line=$(tr -d '\r' < "$console" | grep -a '^MIMOBOX_HARNESS_FAIL=' | tail -n1)
tail_dump() { echo "---- L1 console tail ----" >&2; tail -n 40 "$console" >&2; }
if [ -n "$fail_line" ]; then tail_dump; harness_fail "${fail_line#MIMOBOX_HARNESS_FAIL=}"; fi
if [ -z "$exit_line" ]; then
  tail_dump
  [ "$qemu_rc" = 137 ] && harness_fail "timed out after ${timeout_s}s"
  harness_fail "L1 ended without reporting an exit code (qemu exit $qemu_rc)"
fi
rc=${exit_line#MIMOBOX_HARNESS_EXIT=}
echo "harness: $(basename "$exe") exited $rc in L1 (${elapsed}s wall)"
exit "$rc"
