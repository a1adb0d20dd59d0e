#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then configures, builds and runs a consumer
# that only knows `find_package(mimobox)`.   check-install.sh BUILD_DIR CONSUMER_SRC WORK_DIR
set -euo pipefail
build=$1 consumer=$2 work=$3
rm -rf "$work"; mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$consumer" -B "$work/build" "${gen[@]}" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
