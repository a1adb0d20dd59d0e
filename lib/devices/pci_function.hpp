// One function on the VM's PCI bus, as configuration mechanism 1 (pci_host) reaches it:
// accesses to its 256-byte configuration space. `offset` is aligned to the access width (1, 2
// or 4 bytes) and lies within the space. Called from vCPU threads, concurrently with the VM's
// strand and with each other (see pci_host): implementations lock what they share.
#pragma once

#include <cstdint>
#include <span>

namespace mimobox::devices {

class pci_function {
public:
    virtual ~pci_function() = default;
    virtual void config_read(std::uint32_t offset, std::span<std::uint8_t> data) = 0;
    virtual void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) = 0;
};

}  // namespace mimobox::devices
