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

# The same library and tests built with ASan and UBSan, so memory errors in our own code (and in
# the coroutine frames GCC 12 builds) fail a test instead of passing by luck. The unit tests run
# in full (the fuzz targets are sanitized already); of the kvm tests, the ones that drive the
# sandbox layer, the vsock host, a misbehaving guest and snapshots (a loader of hostile input).
echo "==== sanitizer build (ASan + UBSan) in ${build}-asan"
sanitized=${build}-asan
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 -g1 (line tables): a third less compile time than -O2 -g, with usable reports; asserts on.
if cmake -S "$here" -B "$sanitized" -G Ninja "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DMIMOBOX_SANITIZE=address,undefined \
     -DMIMOBOX_BUILD_GUEST=OFF -DMIMOBOX_GUEST_ASSETS_DIR="$build/guest" -DMIMOBOX_BUILD_BENCH=OFF \
     -DMIMOBOX_BUILD_EXAMPLES=OFF >/dev/null && cmake --build "$sanitized" -j"$(nproc)"; then
  cd "$sanitized" || exit 1
  echo "==== sanitized unit tests"
  ctest -L unit -LE fuzz -E '^install\.' -j"$(nproc)" --output-on-failure || status=1
  echo "==== sanitized kvm tests (a subset)"
  ctest -R '^(sandbox_test|vsock_test|hostile_guest_test|agent_resilience_test|snapshot_test)$' -V --repeat until-pass:2 || status=1
else
  echo "sanitizer build failed"
  status=1
fi
exit $status
