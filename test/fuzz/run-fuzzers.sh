#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time.
#   run-fuzzers.sh SOURCE_DIR WORK_DIR [SECONDS_PER_TARGET]
# A crash, sanitizer report, leak or violated invariant fails the run; the crashing input is
# kept in WORK_DIR and the target's whole log in WORK_DIR/TARGET.log. A target starts from its
# checked-in seeds (test/fuzz/corpus/NAME/, copied into WORK_DIR/TARGET.corpus, which keeps
# what earlier runs found) and uses test/fuzz/NAME.dict when there is one (NAME: the target's
# name without fuzz_).
set -euo pipefail
src=$1 work=$2 seconds=${3:-30}
cxx=$(command -v clang++ || command -v clang++-14) || { echo "fuzz: clang++ not installed (scripts/setup.sh installs it)" >&2; exit 1; }
# The library objects rarely change between runs: ccache (installed by setup.sh) keeps them.
launcher=()
command -v ccache >/dev/null && launcher=(ccache)
mkdir -p "$work/obj"
common=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -I"$src/lib" -I"$src/include" -DBOOST_ASIO_NO_DEPRECATED)
jobs=$(nproc 2>/dev/null || echo 2)

memory="lib/memory/mapping.cpp lib/memory/guest_memory.cpp"
virtio="lib/virtio/split_queue.cpp lib/virtio/virtio_errc.cpp lib/virtio/device_handshake.cpp lib/snapshot/state_stream.cpp"
vsock="lib/vsock/packet.cpp lib/vsock/connection.cpp lib/vsock/muxer.cpp lib/api/error.cpp"
targets=(fuzz_split_queue fuzz_vsock fuzz_stream_link fuzz_agent_frames
         fuzz_mmio_transport fuzz_pci_transport fuzz_pci_config fuzz_serial fuzz_sandbox_responses
         fuzz_snapshot_state)
declare -A sources=(
  [fuzz_split_queue]="$memory lib/virtio/split_queue.cpp lib/virtio/virtio_errc.cpp"
  [fuzz_vsock]="$vsock"
  [fuzz_stream_link]="$vsock lib/vsock/stream_link.cpp"
  [fuzz_agent_frames]="lib/agent/frame.cpp lib/agent/agent_errc.cpp lib/agent/messages.cpp lib/agent/response_reader.cpp"
  [fuzz_mmio_transport]="lib/devices/bus.cpp $memory $virtio lib/virtio/mmio_transport.cpp $vsock lib/vsock/vsock_device.cpp"
  [fuzz_pci_transport]="lib/devices/bus.cpp lib/devices/pci_host.cpp $memory $virtio lib/virtio/pci_transport.cpp $vsock lib/vsock/vsock_device.cpp"
  [fuzz_pci_config]="lib/devices/bus.cpp lib/devices/pci_host.cpp $memory $virtio lib/virtio/pci_transport.cpp lib/api/error.cpp"
  [fuzz_serial]="lib/devices/bus.cpp lib/devices/serial.cpp lib/snapshot/state_stream.cpp lib/api/error.cpp"
  [fuzz_sandbox_responses]="lib/agent/frame.cpp lib/agent/agent_errc.cpp lib/agent/messages.cpp lib/agent/response_reader.cpp"
  [fuzz_snapshot_state]="lib/snapshot/state_codec.cpp lib/snapshot/machine_state.cpp lib/devices/bus.cpp lib/devices/serial.cpp lib/devices/i8042.cpp $memory $virtio lib/virtio/mmio_transport.cpp $vsock lib/vsock/vsock_device.cpp"
)
# Targets that read the same messages share a dictionary.
declare -A dict_of=([sandbox_responses]=agent_frames)
declare -A libs=([fuzz_agent_frames]="-lboost_json" [fuzz_sandbox_responses]="-lboost_json"
                 [fuzz_snapshot_state]="-lboost_json -lcrypto")

# Each library source is compiled once (in parallel), then every target links what it needs.
obj() { local f=${1#lib/}; echo "$work/obj/${f//\//_}.o"; }
mapfile -t unique < <(for t in "${targets[@]}"; do printf '%s\n' ${sources[$t]}; done | sort -u)
pids=()
for f in "${unique[@]}"; do
  "${launcher[@]}" "$cxx" "${common[@]}" -c "$src/$f" -o "$(obj "$f")" &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

pids=()
for target in "${targets[@]}"; do
  objs=()
  for f in ${sources[$target]}; do objs+=("$(obj "$f")"); done
  # shellcheck disable=SC2086  # the library list is meant to split into words
  "${launcher[@]}" "$cxx" "${common[@]}" -c "$src/test/fuzz/$target.cpp" -o "$work/obj/$target.o" &&
    "$cxx" "${common[@]}" "$work/obj/$target.o" "${objs[@]}" ${libs[$target]:-} -o "$work/$target" &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

# Each target runs for its full time; on 2 cores two run at once, which halves the wall time
# without shortening any target's search.
run_target() {
  local target=$1 name=${1#fuzz_}
  local corpus="$work/$target.corpus"
  mkdir -p "$corpus"
  if [[ -d "$src/test/fuzz/corpus/$name" ]]; then cp -f "$src/test/fuzz/corpus/$name"/* "$corpus"/; fi
  local args=(-max_total_time="$seconds" -max_len=8192 -print_final_stats=1)
  local dict=$src/test/fuzz/${dict_of[$name]:-$name}.dict
  if [[ -f "$dict" ]]; then args+=(-dict="$dict"); fi
  if ! (cd "$work" && "./$target" "${args[@]}" "$corpus" >"$work/$target.log" 2>&1); then
    { tail -n 40 "$work/$target.log"
      echo "fuzz: $target failed; full log in $work/$target.log"; } >&2
    return 1
  fi
  { echo "fuzz: $target ran ${seconds}s ($(find "$corpus" -type f | wc -l) inputs in its corpus now${args[3]:+, ${args[3]#-}})"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|DONE' "$work/$target.log" | sed 's/^/  /'; }
}
failed=0 pids=()
for target in "${targets[@]}"; do
  run_target "$target" &
  pids+=($!)
  if (( ${#pids[@]} >= jobs )); then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if (( failed )); then echo "fuzz: a target failed (see above)" >&2; exit 1; fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a finding"
