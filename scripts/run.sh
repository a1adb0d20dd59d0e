#!/usr/bin/env bash
# The main job: run a command in a fresh microVM (mimobox's VMM + the guest agent) and print its
# output. Natively where KVM is usable, else inside the QEMU TCG harness; the first line says
# which. The exit status is the command's.
#   scripts/run.sh [COMMAND [ARGS...]]        default: uname -a
# e.g. scripts/run.sh sh -c 'echo hello from $(hostname); nproc'
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
[ -x "$build/examples/01_run_command" ] && [ -f "$build/guest/bzImage" ] || "$here/scripts/setup.sh" >&2
[ $# -gt 0 ] || set -- uname -a
exec "$here/test/harness/kvm-run.sh" --probe "$build/lib/mimobox-kvm-probe" --assets "$build/guest" \
  -- "$build/examples/01_run_command" "$@"
