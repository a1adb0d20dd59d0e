#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then configures, builds and runs a consumer
# that only knows `find_package(mimobox)`.
#   check-install.sh BUILD_DIR CONSUMER_SRC WORK_DIR [--snippets SOURCE_ROOT -- RUNNER...]
# With --snippets it also builds the documentation's snippets (extract-snippets.sh) and runs that
# program through RUNNER (kvm-run.sh: it boots VMs) instead of running the plain consumer.
set -euo pipefail
build=$1 consumer=$2 work=$3
shift 3
snippets_src=""
if [ "${1:-}" = --snippets ]; then
  snippets_src=$2
  shift 2
  [ "${1:-}" = -- ] && shift
fi
rm -rf "$work"; mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
extra=()
if [ -n "$snippets_src" ]; then
  "$(dirname "$0")/extract-snippets.sh" "$snippets_src" "$work/snippets"
  extra=(-DMIMOBOX_SNIPPETS_DIR="$work/snippets")
fi
cmake -S "$consumer" -B "$work/build" "${gen[@]}" -DCMAKE_PREFIX_PATH="$work/prefix" "${extra[@]}" >/dev/null
cmake --build "$work/build" >/dev/null
if [ -n "$snippets_src" ]; then
  exec "$@" "$work/build/snippets"
fi
"$work/build/consumer"
