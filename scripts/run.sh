#!/usr/bin/env bash
# The main job: boot a microVM with mimobox's VMM and show its console. Natively where KVM is
# usable, else inside the QEMU TCG harness; the first line says which.
#   scripts/run.sh [SECONDS] [VCPUS] [EXTRA KERNEL ARGUMENTS...]
# e.g. scripts/run.sh 20 2 mimobox.test=cpus   (the guest prints its online CPU count)
# Until the guest agent exists (issue 5) the guest's /init is the test init, which runs the
# action named by mimobox.test= rather than an arbitrary command.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
[ -x "$build/examples/boot_console" ] && [ -f "$build/guest/bzImage" ] || "$here/scripts/setup.sh" >&2
[ $# -gt 0 ] || set -- 8 2 mimobox.test=cpus
exec "$here/test/harness/kvm-run.sh" --probe "$build/lib/mimobox-kvm-probe" --assets "$build/guest" \
  -- "$build/examples/boot_console" "$@"
