#!/usr/bin/env bash
# Configures and builds everything (library, guest assets, tests, benchmarks, examples) in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
gen=()
[ -f "$build/CMakeCache.txt" ] || gen=(-G Ninja)
# ccache (installed by setup.sh) keeps a rebuild of an unchanged tree, and CI's second run, cheap.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$here" -B "$build" "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=${MIMOBOX_BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$build" -j"$(nproc)"
