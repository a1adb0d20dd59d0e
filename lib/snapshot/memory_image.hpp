// Guest memory as a snapshot's memory file: sparse, so a snapshot costs what the guest touched,
// not its memory size; checked in chunks, so a restore reads (and verifies) only what holds data.
//
// A page the host never backed (mincore says not resident: the guest never touched it) or one
// that reads all zero becomes a hole. Each chunk is recorded by the SHA-256 of its bytes, or by
// an empty string when it is all hole; verify_memory_image then reads only the data chunks, so
// checking a file costs what was written, and a restore stays independent of memory size.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>
#include <utility>

namespace mimobox::snapshot {

struct memory_image {
    memory_image() = default;
    std::uint64_t size = 0;         ///< bytes of guest memory (the file's length)
    std::uint64_t chunk_bytes = 0;  ///< a multiple of the page size
    std::vector<std::string> chunk_sha256;  ///< hex, or "" for a chunk that is all hole (zeros)
    std::uint64_t data_bytes = 0;   ///< bytes written (the rest are holes)
    /// Bytes the host had backed (the guest touched them), zero or not; write_memory_image only.
    std::uint64_t touched_bytes = 0;
};

inline constexpr std::uint64_t default_chunk_bytes = 2u << 20;

/// Writes `memory` (page-aligned, as guest RAM is) into the empty file `fd`. Errors are the
/// system's (disk full, I/O error).
boost::system::result<memory_image> write_memory_image(int fd, std::span<const std::uint8_t> memory,
                                                       std::uint64_t chunk_bytes = default_chunk_bytes);

/// One guest RAM region as a source for the memory file. `file_backed` lists byte ranges
/// [first, second) of the region that may hold data though mincore calls them absent: a region
/// mapped from an earlier snapshot's file reads its data from the page cache, which may have
/// dropped it (a restored VM's memory, captured again).
struct memory_source {
    std::span<const std::uint8_t> bytes;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> file_backed;
};
/// The regions one after another, in guest-physical order. Every region but the last must be
/// a whole number of chunks (EINVAL), so chunks never straddle two.
boost::system::result<memory_image> write_memory_image(int fd, std::span<const memory_source> regions,
                                                       std::uint64_t chunk_bytes = default_chunk_bytes);

/// The ranges of `fd` in [offset, offset + size) that hold data (SEEK_DATA/SEEK_HOLE),
/// relative to `offset`.
boost::system::result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> data_ranges(int fd, std::uint64_t offset,
                                                                                       std::uint64_t size);

/// Checks `fd` against `image`: its length, every data chunk's hash, and that every chunk
/// recorded as a hole holds no data. snapshot_errc::truncated, corrupt_memory or corrupt_state
/// (an image description that cannot be right), or the system's error.
boost::system::error_code verify_memory_image(int fd, const memory_image& image);

}  // namespace mimobox::snapshot
