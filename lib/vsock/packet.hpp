// The virtio-vsock packet header (virtio 1.2 §5.10.6): 44 bytes, little-endian, packed.
// Pure codec: no sockets, no guest memory.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace mimobox::vsock {

enum class op : std::uint16_t {
    invalid = 0,
    request = 1,
    response = 2,
    rst = 3,
    shutdown = 4,
    rw = 5,
    credit_update = 6,
    credit_request = 7,
};

inline constexpr std::uint16_t type_stream = 1;
inline constexpr std::uint32_t shutdown_receive = 1, shutdown_send = 2;
inline constexpr std::uint64_t host_cid = 2;
inline constexpr std::size_t header_size = 44;

struct header {
    std::uint64_t src_cid = 0;
    std::uint64_t dst_cid = 0;
    std::uint32_t src_port = 0;
    std::uint32_t dst_port = 0;
    std::uint32_t len = 0;
    std::uint16_t type = type_stream;
    op operation = op::invalid;
    std::uint32_t flags = 0;
    std::uint32_t buf_alloc = 0;
    std::uint32_t fwd_cnt = 0;
    friend bool operator==(const header&, const header&) = default;
};

std::array<std::uint8_t, header_size> encode(const header& h) noexcept;
header decode(std::span<const std::uint8_t, header_size> bytes) noexcept;

}  // namespace mimobox::vsock
