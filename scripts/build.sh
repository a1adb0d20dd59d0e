#!/usr/bin/env bash
# Configures and builds everything (library, guest assets, tests, benchmarks, examples) in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MIMOBOX_BUILD_DIR:-$here/build}
gen=()
[ -f "$build/CMakeCache.txt" ] || gen=(-G Ninja)
cmake -S "$here" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=${MIMOBOX_BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$build" -j"$(nproc)"
