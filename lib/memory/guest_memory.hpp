// Guest RAM: a set of non-overlapping regions, each a host mapping at a guest-physical base.
// Every device or loader access to guest memory goes through host_span() below, which checks
// that [addr, addr + len) lies wholly inside one region. The guest controls the addresses and
// lengths it hands to devices, so nothing else may turn a guest address into a pointer.
#pragma once

#include "memory/guest_addr.hpp"
#include "memory/mapping.hpp"

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace mimobox::memory {

using boost::system::error_code;

class guest_memory {
public:
    struct region {
        guest_addr base;
        mapping backing;
        std::uint64_t end() const noexcept { return base.value + backing.size(); }
    };

    /// Adds `backing` at `base`. EINVAL if it overlaps a region or wraps the address space.
    error_code add_region(guest_addr base, mapping backing);

    /// Host view of [addr, addr + len), or nullopt when any byte of it is outside guest RAM or
    /// the range spans two regions. The span stays valid while this guest_memory lives and the
    /// region is not removed; the guest may change the bytes concurrently (its vCPUs run), so
    /// callers copy what they validate before trusting it.
    std::optional<std::span<std::byte>> host_span(guest_addr addr, std::uint64_t len) const noexcept;

    error_code read(guest_addr addr, std::span<std::byte> out) const noexcept;
    error_code write(guest_addr addr, std::span<const std::byte> in) const noexcept;

    template <class T>
        requires std::is_trivially_copyable_v<T>
    boost::system::result<T> read_obj(guest_addr addr) const noexcept {
        T value;
        if (auto ec = read(addr, std::as_writable_bytes(std::span(&value, 1)))) return ec;
        return value;
    }
    template <class T>
        requires std::is_trivially_copyable_v<T>
    error_code write_obj(guest_addr addr, const T& value) const noexcept {
        return write(addr, std::as_bytes(std::span(&value, 1)));
    }

    const std::vector<region>& regions() const noexcept { return regions_; }
    std::uint64_t total_size() const noexcept;

private:
    std::vector<region> regions_;  // sorted by base
};

}  // namespace mimobox::memory
