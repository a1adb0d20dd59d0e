// A value as the bytes of a guest access of some width, and back (x86 is little-endian).
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace mimobox::test {

inline std::array<std::uint8_t, 8> le_bytes(std::uint64_t v) {
    std::array<std::uint8_t, 8> b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
    return b;
}

inline std::uint64_t le_value(std::span<const std::uint8_t> b) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < b.size() && i < 8; ++i) v |= std::uint64_t(b[i]) << (8 * i);
    return v;
}

}  // namespace mimobox::test
