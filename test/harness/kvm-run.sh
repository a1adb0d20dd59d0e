#!/usr/bin/env bash
# CTest launcher for every test labelled `kvm`: runs the test natively where /dev/kvm works,
# otherwise inside the QEMU TCG harness (run-in-harness.sh). Says which, always.
#   kvm-run.sh --probe PROBE [--assets DIR] -- EXE [ARGS...]
# MIMOBOX_KVM_MODE=auto (default) | native | harness. `native` fails, never skips, when KVM is
# unusable; `harness` forces the harness even where KVM works (to keep the harness tested).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
probe="" assets="" harness_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --probe) probe=$2; shift 2 ;;
    --assets) assets=$2; shift 2 ;;
    --with-exe|--with-file) harness_args+=("$1" "$2"); shift 2 ;;  # only the harness needs these
    --) shift; break ;;
    *) break ;;
  esac
done
mode=${MIMOBOX_KVM_MODE:-auto}
if [ "$mode" != harness ]; then
  if reason=$("$probe" 2>&1); then
    echo "kvm-run: native KVM"
    [ -n "$assets" ] && export MIMOBOX_VM_ASSETS_DIR=${MIMOBOX_VM_ASSETS_DIR:-$assets}
    exec "$@"
  fi
  if [ "$mode" = native ]; then
    echo "kvm-run: FAILED: MIMOBOX_KVM_MODE=native but $reason" >&2
    exit 1
  fi
  echo "kvm-run: no usable KVM here ($reason); running in the QEMU TCG harness"
else
  echo "kvm-run: harness forced (MIMOBOX_KVM_MODE=harness)"
fi
[ -n "$assets" ] && harness_args+=(--assets "$assets")
exec "$here/run-in-harness.sh" "${harness_args[@]}" -- "$@"
