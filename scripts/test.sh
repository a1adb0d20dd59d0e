#!/usr/bin/env bash
# The project's test command: installs dependencies, builds, runs the `unit` tests, then the
# `kvm` tests (natively where /dev/kvm works, inside the QEMU TCG harness where it doesn't;
# each test prints which), and prints CTest's summaries. Non-zero exit if anything failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
"$here/scripts/setup.sh" || exit 1
cd "$build" || exit 1
status=0
echo "==== unit tests"
ctest -L unit -j"$(nproc)" --output-on-failure || status=1
echo "==== kvm tests (verbose: each shows native KVM or harness)"
# In the harness, QEMU TCG's emulated SVM occasionally breaks the nested guest (the L1 wedges,
# or a VM stops with an emulation error); a kvm test that fails is therefore run once more, and
# the verbose log keeps both attempts. A test that fails twice fails the run.
ctest -L kvm -V --repeat until-pass:2 || status=1
exit $status
