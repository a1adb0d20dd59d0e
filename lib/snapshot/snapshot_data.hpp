// What a microvm_snapshot holds: the state blob, its decoded body, and the memory file. Shared
// and immutable once made: every restore maps the same file MAP_PRIVATE, so the file must never
// change while a VM maps it (a captured one is a sealed memfd; one loaded from disk is opened
// read-only, and the documentation says not to rewrite it in place).
#pragma once

#include "kvm/unique_fd.hpp"
#include "snapshot/machine_state.hpp"
#include "snapshot/state_codec.hpp"

#include <memory>

namespace mimobox::vm::detail {

struct snapshot_data {
    snapshot::state_blob blob;
    snapshot::machine_state machine;
    kvm::unique_fd memory;
    std::uint64_t memory_data_bytes = 0;  ///< bytes the memory file really holds (its holes excluded)
    std::uint64_t memory_touched_bytes = 0;  ///< at capture: guest memory the host had backed; 0 when loaded
};

/// Decodes the body, checks the metadata against it and, with `verify_memory`, the memory file
/// against its chunk hashes. snapshot_errc (or the system's error reading the file).
boost::system::result<std::shared_ptr<const snapshot_data>> make_snapshot_data(snapshot::state_blob blob, kvm::unique_fd memory,
                                                                               bool verify_memory);

}  // namespace mimobox::vm::detail
