#!/usr/bin/env bash
# Counts how often the harness's L1 wedges: boots the L1 N times per QEMU build, interleaved,
# each running one kvm test through run-in-harness.sh, and prints one JSON line per boot and a
# summary per build (boots, wedged first attempts, retries, failures, wall time per boot).
#   measure-wedges.sh N BUILD_DIR QEMU[:DATADIR[,DATADIR]] [QEMU[:...]...] [-- TEST ARGS...]
# TEST defaults to BUILD_DIR/test/kvm/boot_test (several VMs, a few minutes of L1 time).
# Example (Debian's 7.2 against a backports 10.0 unpacked with dpkg -x into /opt/q10):
#   test/harness/measure-wedges.sh 30 build /usr/bin/qemu-system-x86_64 \
#       /opt/q10/usr/bin/qemu-system-x86_64:/opt/q10/usr/share/qemu,/opt/q10/usr/share/seabios
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:?usage: measure-wedges.sh N BUILD_DIR QEMU[:DATADIR]... [-- TEST ARGS...]}
build=$(cd "${2:?build dir}" && pwd)
shift 2
qemus=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do qemus+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
test_cmd=("$@")
[ ${#test_cmd[@]} -gt 0 ] || test_cmd=("$build/test/kvm/boot_test")
[ ${#qemus[@]} -gt 0 ] || { echo "measure-wedges: name at least one QEMU" >&2; exit 2; }
log=$(mktemp -d "${TMPDIR:-/tmp}/measure-wedges.XXXXXX")
declare -A boots wedges fails seconds
for ((i = 1; i <= n; i++)); do
  for q in "${qemus[@]}"; do
    bin=${q%%:*} datadir=""
    [ "$q" != "$bin" ] && datadir=${q#*:}
    version=$("$bin" --version | head -n1 | sed 's/^QEMU emulator version //; s/ .*//')
    out="$log/run-$i-qemu-$version.log"
    start=$(date +%s)
    MIMOBOX_HARNESS_QEMU=$bin MIMOBOX_HARNESS_QEMU_DATADIR=$datadir \
      "$here/run-in-harness.sh" --assets "$build/guest" -- "${test_cmd[@]}" >"$out" 2>&1
    rc=$?
    wall=$(( $(date +%s) - start ))
    # The harness prints this line only when the first attempt wedged and it retries.
    wedged=$(grep -c '^harness: L1 wedged\|^harness: L1 timed out' "$out")
    printf '{"qemu":"%s","boot":%d,"rc":%d,"first_attempt_wedged":%d,"wall_s":%d}\n' "$version" "$i" "$rc" "$wedged" "$wall"
    boots[$version]=$(( ${boots[$version]:-0} + 1 ))
    wedges[$version]=$(( ${wedges[$version]:-0} + wedged ))
    fails[$version]=$(( ${fails[$version]:-0} + (rc != 0) ))
    seconds[$version]=$(( ${seconds[$version]:-0} + wall ))
  done
done
for v in "${!boots[@]}"; do
  printf '{"summary":true,"qemu":"%s","boots":%d,"first_attempts_wedged":%d,"failed_runs":%d,"mean_wall_s":%d}\n' \
    "$v" "${boots[$v]}" "${wedges[$v]}" "${fails[$v]}" $(( seconds[$v] / boots[$v] ))
done
echo "measure-wedges: logs in $log" >&2
