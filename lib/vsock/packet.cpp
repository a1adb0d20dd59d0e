#include "vsock/packet.hpp"

#include <cstring>

namespace mimobox::vsock {

namespace {
// x86-64 hosts only (kvm_abi.hpp already assumes it): little-endian stores are memcpy.
template <class T>
void put(std::array<std::uint8_t, header_size>& b, std::size_t off, T v) noexcept {
    std::memcpy(b.data() + off, &v, sizeof v);
}
template <class T>
T get(std::span<const std::uint8_t, header_size> b, std::size_t off) noexcept {
    T v;
    std::memcpy(&v, b.data() + off, sizeof v);
    return v;
}
}  // namespace

std::array<std::uint8_t, header_size> encode(const header& h) noexcept {
    std::array<std::uint8_t, header_size> b{};
    put(b, 0, h.src_cid);
    put(b, 8, h.dst_cid);
    put(b, 16, h.src_port);
    put(b, 20, h.dst_port);
    put(b, 24, h.len);
    put(b, 28, h.type);
    put(b, 30, static_cast<std::uint16_t>(h.operation));
    put(b, 32, h.flags);
    put(b, 36, h.buf_alloc);
    put(b, 40, h.fwd_cnt);
    return b;
}

header decode(std::span<const std::uint8_t, header_size> b) noexcept {
    header h;
    h.src_cid = get<std::uint64_t>(b, 0);
    h.dst_cid = get<std::uint64_t>(b, 8);
    h.src_port = get<std::uint32_t>(b, 16);
    h.dst_port = get<std::uint32_t>(b, 20);
    h.len = get<std::uint32_t>(b, 24);
    h.type = get<std::uint16_t>(b, 28);
    h.operation = static_cast<op>(get<std::uint16_t>(b, 30));
    h.flags = get<std::uint32_t>(b, 32);
    h.buf_alloc = get<std::uint32_t>(b, 36);
    h.fwd_cnt = get<std::uint32_t>(b, 40);
    return h;
}

}  // namespace mimobox::vsock
