#include "devices/pci_host.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::devices {

namespace {
constexpr std::uint32_t enable_bit = 0x80000000u;

void put(std::span<std::uint8_t> out, std::uint32_t offset, const std::uint8_t* space, std::size_t space_size) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = offset + i < space_size ? space[offset + i] : 0;
}
}  // namespace

bool pci_host::add(unsigned slot, pci_function& function) {
    if (slot == 0 || slot >= max_devices || slots_[slot]) return false;
    slots_[slot] = &function;
    return true;
}

pci_function* pci_host::selected(std::uint64_t data_offset, std::size_t width, std::uint32_t& reg) const {
    const std::uint32_t address = address_.load(std::memory_order_relaxed);
    if (!(address & enable_bit)) return nullptr;
    const std::uint32_t bus = (address >> 16) & 0xff, device = (address >> 11) & 0x1f, function = (address >> 8) & 7;
    if (bus != 0 || function != 0) return nullptr;
    reg = (address & 0xfc) + static_cast<std::uint32_t>(data_offset);
    if (reg % width) return nullptr;  // unaligned: no chipset forwards it
    return slots_[device];
}

void pci_host::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), std::uint8_t{0xff});  // absent device: all ones
    if (offset < 4) {
        // Only the whole latch reads back (Linux's probe checks exactly that).
        if (offset == 0 && data.size() == 4) {
            const std::uint32_t address = address_.load(std::memory_order_relaxed);
            std::memcpy(data.data(), &address, 4);
        }
        return;
    }
    std::uint32_t reg = 0;
    if (auto* f = selected(offset - 4, data.size(), reg)) f->config_read(reg, data);
}

void pci_host::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset < 4) {
        // Byte writes to 0xcfb are the old mechanism-2 probe's; only a 32-bit write sets the latch.
        if (offset == 0 && data.size() == 4) {
            std::uint32_t address;
            std::memcpy(&address, data.data(), 4);
            address_.store(address, std::memory_order_relaxed);
        }
        return;
    }
    std::uint32_t reg = 0;
    if (auto* f = selected(offset - 4, data.size(), reg)) f->config_write(reg, data);
}

void pci_host::host_bridge::config_read(std::uint32_t offset, std::span<std::uint8_t> data) {
    // Red Hat's ID for a virtual host bridge (as QEMU's); class 06/00, header type 0.
    static constexpr std::uint8_t space[0x10] = {0x36, 0x1b, 0x08, 0x00, 0, 0, 0, 0,
                                                 0x00, 0x00, 0x00, 0x06, 0, 0, 0x00, 0};
    put(data, offset, space, sizeof space);
}

}  // namespace mimobox::devices
