// The snapshot's state blob, sans-io: self-describing metadata (Boost.JSON) and the binary state
// of vCPUs, VM and devices, in one byte string with a SHA-256 over all of it.
//
//   "MMXSNAP\0" | u32 format_version | u32 metadata_len | metadata JSON
//   | u64 body_len | body | sha256(everything before)
//
// The body is a sequence of sections written by state_writer and read back by state_reader.
// A blob comes from disk or another process and may be damaged or hostile: every length and
// count is checked against what is left before anything is allocated, and every failure is a
// snapshot_errc.
#pragma once

#include "mimobox/vm/error.hpp"
#include "snapshot/state_stream.hpp"

#include <boost/system/result.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mimobox::snapshot {

inline constexpr std::uint32_t format_version = 1;
inline constexpr std::array<std::uint8_t, 8> magic = {'M', 'M', 'X', 'S', 'N', 'A', 'P', 0};
/// Ceilings a loader enforces before allocating: far above any real snapshot.
inline constexpr std::size_t max_metadata_bytes = 1u << 20;
inline constexpr std::uint64_t max_body_bytes = 64ull << 20;

/// One CPUID leaf as the guest saw it.
struct cpuid_leaf {
    std::uint32_t function = 0, index = 0, flags = 0;
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

struct snapshot_metadata {
    snapshot_metadata() = default;  // not an aggregate: safe as `{}` in co_await (decision 0021)

    std::uint32_t format_version = snapshot::format_version;
    std::string vmm_version;
    std::uint32_t vcpu_count = 0;
    std::uint64_t memory_bytes = 0;
    std::string cpu_vendor;  ///< CPUID leaf 0's vendor string of the capturing host
    std::vector<cpuid_leaf> cpuid;
    std::vector<std::string> devices;  ///< what the state describes, in body order
    /// The memory file is checked in chunks of this size, each against its SHA-256 (hex).
    std::uint64_t memory_chunk_bytes = 0;
    std::vector<std::string> memory_chunk_sha256;
};

struct state_blob {
    state_blob() = default;
    snapshot_metadata metadata;
    std::vector<std::uint8_t> body;
};

std::vector<std::uint8_t> to_bytes(const state_blob& blob);
/// snapshot_errc::not_a_snapshot, unsupported_format_version, truncated, corrupt_state.
boost::system::result<state_blob> from_bytes(std::span<const std::uint8_t> bytes);

/// SHA-256 of `bytes`.
std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> bytes);
std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace mimobox::snapshot
