// A device on the port-I/O or MMIO bus. Offsets are relative to the device's base; `data` is
// the access width (1, 2, 4 or 8 bytes). Called on the VM's strand only, never concurrently.
#pragma once

#include <cstdint>
#include <span>

namespace mimobox::devices {

class bus_device {
public:
    virtual ~bus_device() = default;
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

}  // namespace mimobox::devices
