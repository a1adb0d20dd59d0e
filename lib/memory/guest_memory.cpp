#include "memory/guest_memory.hpp"

#include <algorithm>

namespace mimobox::memory {

namespace {
error_code einval() noexcept { return {EINVAL, boost::system::system_category()}; }
error_code efault() noexcept { return {EFAULT, boost::system::system_category()}; }
}  // namespace

error_code guest_memory::add_region(guest_addr base, mapping backing) {
    std::uint64_t end = 0;
    if (backing.size() == 0 || !checked_add(base.value, backing.size(), end)) return einval();
    for (const auto& r : regions_)
        if (base.value < r.end() && r.base.value < end) return einval();
    auto pos = std::find_if(regions_.begin(), regions_.end(), [&](const region& r) { return r.base > base; });
    regions_.insert(pos, region{base, std::move(backing)});
    return {};
}

std::optional<std::span<std::byte>> guest_memory::host_span(guest_addr addr, std::uint64_t len) const noexcept {
    std::uint64_t end = 0;
    if (!checked_add(addr.value, len, end)) return std::nullopt;
    for (const auto& r : regions_) {
        if (addr.value >= r.base.value && end <= r.end()) {
            // Safe: the range was checked to lie inside this region's live mapping.
            return std::span<std::byte>(r.backing.data() + (addr.value - r.base.value), static_cast<std::size_t>(len));
        }
    }
    return std::nullopt;
}

error_code guest_memory::read(guest_addr addr, std::span<std::byte> out) const noexcept {
    auto src = host_span(addr, out.size());
    if (!src) return efault();
    std::memcpy(out.data(), src->data(), out.size());
    return {};
}

error_code guest_memory::write(guest_addr addr, std::span<const std::byte> in) const noexcept {
    auto dst = host_span(addr, in.size());
    if (!dst) return efault();
    std::memcpy(dst->data(), in.data(), in.size());
    return {};
}

std::uint64_t guest_memory::total_size() const noexcept {
    std::uint64_t total = 0;
    for (const auto& r : regions_) total += r.backing.size();
    return total;
}

}  // namespace mimobox::memory
