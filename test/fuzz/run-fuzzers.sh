#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time.
#   run-fuzzers.sh SOURCE_DIR WORK_DIR [SECONDS_PER_TARGET]
# A crash, sanitizer report or leak fails the run; the crashing input is kept in WORK_DIR.
set -euo pipefail
src=$1 work=$2 seconds=${3:-30}
cxx=$(command -v clang++ || command -v clang++-14) || { echo "fuzz: clang++ not installed (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$work"
common=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -I"$src/lib" -I"$src/include" -DBOOST_ASIO_NO_DEPRECATED)
declare -A sources=(
  [fuzz_split_queue]="lib/memory/mapping.cpp lib/memory/guest_memory.cpp lib/virtio/split_queue.cpp lib/virtio/virtio_errc.cpp"
  [fuzz_vsock]="lib/vsock/packet.cpp lib/vsock/connection.cpp lib/vsock/muxer.cpp lib/vsock/vsock_errc.cpp"
  [fuzz_stream_link]="lib/vsock/packet.cpp lib/vsock/connection.cpp lib/vsock/muxer.cpp lib/vsock/vsock_errc.cpp lib/vsock/stream_link.cpp"
  [fuzz_agent_frames]="lib/agent/frame.cpp lib/agent/agent_errc.cpp lib/agent/messages.cpp lib/agent/response_reader.cpp"
)
declare -A libs=([fuzz_agent_frames]="-lboost_json")
for target in "${!sources[@]}"; do
  files=()
  for f in ${sources[$target]}; do files+=("$src/$f"); done
  # shellcheck disable=SC2086  # the library list is meant to split into words
  "$cxx" "${common[@]}" "$src/test/fuzz/$target.cpp" "${files[@]}" ${libs[$target]:-} -o "$work/$target"
  mkdir -p "$work/$target.corpus"
  echo "fuzz: $target for ${seconds}s"
  (cd "$work" && "./$target" -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 "$target.corpus" 2>&1 | tail -n 5)
done
echo "fuzz: all targets ran ${seconds}s without a finding"
