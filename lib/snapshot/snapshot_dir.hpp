// A snapshot on disk: a directory holding `state` (the state blob) and `memory` (the sparse
// memory file), written atomically: into a temporary directory beside it, every file synced,
// then renamed into place and the parent synced. A reader sees the whole snapshot or none.
#pragma once

#include "snapshot/memory_image.hpp"
#include "snapshot/state_codec.hpp"

#include <boost/system/result.hpp>

#include <filesystem>
#include <span>

namespace mimobox::snapshot {

/// Writes `memory` and `blob` (whose memory fields are filled in here) as `dir`, which must not
/// exist (EEXIST). Returns the blob as written. Nothing is left behind on failure.
boost::system::result<state_blob> write_snapshot_dir(const std::filesystem::path& dir, state_blob blob,
                                                     std::span<const std::uint8_t> memory);

/// Writes a snapshot whose memory is already a file: `blob` (memory fields filled in) and a
/// sparse copy of `memory_fd`'s first memory_bytes, holes kept.
boost::system::result<state_blob> write_snapshot_dir(const std::filesystem::path& dir, const state_blob& blob, int memory_fd);

/// A snapshot read back from disk and checked: the state's hash and fields, and the memory
/// file's length and every data chunk. `memory_fd` is open read-only (the caller maps it).
struct loaded_snapshot {
    loaded_snapshot() = default;
    loaded_snapshot(loaded_snapshot&& other) noexcept;
    loaded_snapshot& operator=(loaded_snapshot&& other) noexcept;
    ~loaded_snapshot();
    state_blob state;
    int memory_fd = -1;
};
/// A missing directory or file is the system's no_such_file_or_directory (condition not_found);
/// damage is a snapshot_errc.
boost::system::result<loaded_snapshot> open_snapshot_dir(const std::filesystem::path& dir);

}  // namespace mimobox::snapshot
