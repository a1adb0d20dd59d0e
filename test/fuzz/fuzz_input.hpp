// Shared by the device fuzz targets: reads the fuzz input as a stream of little-endian fields.
// Running out of input yields zeros (and done() turns true), so every prefix of an input is a
// valid, shorter operation list and libFuzzer's mutations stay meaningful.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace mimobox::fuzz {

/// Aborts the fuzz run: a violated invariant (libFuzzer reports it as a crash and keeps the input).
[[noreturn]] inline void violated() { __builtin_trap(); }
inline void check(bool invariant) {
    if (!invariant) violated();
}

class input {
public:
    input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    bool done() const noexcept { return pos_ >= size_; }
    std::uint8_t u8() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }
    std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(u8() | u8() << 8); }
    std::uint32_t u32() noexcept { return u16() | std::uint32_t(u16()) << 16; }
    std::uint64_t u64() noexcept { return u32() | std::uint64_t(u32()) << 32; }
    /// Up to `n` bytes of the input itself (fewer at its end).
    std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
        const std::size_t take = pos_ < size_ ? (n < size_ - pos_ ? n : size_ - pos_) : 0;
        std::span<const std::uint8_t> out(data_ + pos_, take);
        pos_ += take;
        return out;
    }
    /// An access width of 1, 2, 4 or 8 bytes (or 1, 2, 4 when `port_io`: x86 port I/O has no
    /// 8-byte accesses, and KVM never exits with one).
    std::size_t width(bool port_io = false) noexcept {
        static constexpr std::size_t widths[] = {1, 2, 4, 8};
        return widths[u8() % (port_io ? 3 : 4)];
    }
    /// A value of `width` bytes.
    std::uint64_t value(std::size_t width) noexcept {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < width; ++i) v |= std::uint64_t(u8()) << (8 * i);
        return v;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

/// Little-endian bytes of `v`, `width` of them (at most 8).
struct access_bytes {
    std::uint8_t b[8] = {};
    std::size_t n = 0;
    access_bytes(std::uint64_t v, std::size_t width) : n(width) {
        for (std::size_t i = 0; i < width; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
    }
    std::span<const std::uint8_t> span() const noexcept { return {b, n}; }
};
inline std::uint64_t load_le(std::span<const std::uint8_t> data) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < data.size() && i < 8; ++i) v |= std::uint64_t(data[i]) << (8 * i);
    return v;
}

}  // namespace mimobox::fuzz
