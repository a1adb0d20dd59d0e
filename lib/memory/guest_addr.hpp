// A guest-physical address: a distinct type so it is never mixed up with a host pointer or a size.
#pragma once

#include <compare>
#include <cstdint>

namespace mimobox::memory {

struct guest_addr {
    std::uint64_t value = 0;

    constexpr guest_addr() noexcept = default;
    constexpr explicit guest_addr(std::uint64_t v) noexcept : value(v) {}
    constexpr auto operator<=>(const guest_addr&) const noexcept = default;
    /// Wrapping add; callers that need overflow detection use checked_add.
    constexpr guest_addr operator+(std::uint64_t offset) const noexcept { return guest_addr(value + offset); }
};

/// a + b, or false when it overflows 64 bits (a hostile guest's descriptor can ask for that).
constexpr bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
    return !__builtin_add_overflow(a, b, &out);
}

}  // namespace mimobox::memory
