#!/usr/bin/env bash
# Copies the code the documentation shows, verbatim, into files a test program includes:
#   extract-snippets.sh SOURCE_ROOT OUT_DIR
# - README.md: the indented block after `<!-- snippet:using-the-library ... -->`;
# - include/mimobox/vm/microvm_sandbox.hpp, microvm_snapshot.hpp, restore_pool.hpp and vm_pool.hpp: the first block of `//   `
#   example lines.
# Fails if a block is missing, so a renamed marker cannot turn the test into a no-op.
set -euo pipefail
src=$1 out=$2
mkdir -p "$out"
awk '/<!-- snippet:using-the-library/ { on = 1; next }
     on && /^    / { print substr($0, 5); seen = 1; next }
     on && /^$/ { if (seen) print ""; next }
     on && seen { exit }' "$src/README.md" > "$out/readme_using.inc"
awk '/^\/\/   / { print substr($0, 6); seen = 1; next } seen { exit }' \
  "$src/include/mimobox/vm/microvm_sandbox.hpp" > "$out/sandbox_header_example.inc"
awk '/^\/\/   / { print substr($0, 6); seen = 1; next } seen { exit }' \
  "$src/include/mimobox/vm/microvm_snapshot.hpp" > "$out/snapshot_header_example.inc"
awk '/^\/\/   / { print substr($0, 6); seen = 1; next } seen { exit }' \
  "$src/include/mimobox/vm/restore_pool.hpp" > "$out/restore_pool_header_example.inc"
awk '/^\/\/   / { print substr($0, 6); seen = 1; next } seen { exit }' \
  "$src/include/mimobox/vm/vm_pool.hpp" > "$out/vm_pool_header_example.inc"
for f in readme_using.inc sandbox_header_example.inc snapshot_header_example.inc restore_pool_header_example.inc \
  vm_pool_header_example.inc; do
  if ! grep -q co_await "$out/$f"; then
    echo "extract-snippets: no code found for $f" >&2
    exit 1
  fi
done
