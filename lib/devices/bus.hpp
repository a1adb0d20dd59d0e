// Address-range dispatch for one address space (ports or MMIO). Unclaimed reads return all
// ones, like an empty ISA slot; unclaimed writes are dropped. The guest picks the addresses, so
// a lookup never assumes an access lies inside one device: it must fit wholly.
#pragma once

#include "devices/bus_device.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace mimobox::devices {

class bus {
public:
    /// false if [base, base + length) overlaps a registered range or is empty.
    bool add(std::uint64_t base, std::uint64_t length, bus_device& device);
    /// true when a device handled it.
    bool read(std::uint64_t addr, std::span<std::uint8_t> data) const;
    bool write(std::uint64_t addr, std::span<const std::uint8_t> data) const;

private:
    struct range {
        std::uint64_t base, length;
        bus_device* device;  // not owned: devices outlive the bus (machine owns both)
    };
    const range* find(std::uint64_t addr, std::size_t size) const;
    std::vector<range> ranges_;
};

}  // namespace mimobox::devices
