#include "devices/bus.hpp"

#include <algorithm>

namespace mimobox::devices {

bool bus::add(std::uint64_t base, std::uint64_t length, bus_device& device) {
    if (length == 0 || base + length < base) return false;
    for (const auto& r : ranges_)
        if (base < r.base + r.length && r.base < base + length) return false;
    ranges_.push_back({base, length, &device});
    return true;
}

const bus::range* bus::find(std::uint64_t addr, std::size_t size) const {
    for (const auto& r : ranges_)
        if (addr >= r.base && addr - r.base < r.length && size <= r.length - (addr - r.base)) return &r;
    return nullptr;
}

bool bus::read(std::uint64_t addr, std::span<std::uint8_t> data) const {
    if (const range* r = find(addr, data.size())) {
        r->device->read(addr - r->base, data);
        return true;
    }
    std::fill(data.begin(), data.end(), std::uint8_t{0xff});
    return false;
}

bool bus::write(std::uint64_t addr, std::span<const std::uint8_t> data) const {
    if (const range* r = find(addr, data.size())) {
        r->device->write(addr - r->base, data);
        return true;
    }
    return false;
}

}  // namespace mimobox::devices
