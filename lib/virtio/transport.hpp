// What a virtio device needs from the transport in front of it (virtio-mmio or virtio-pci):
// interrupts and a way to report a driver that broke the contract.
#pragma once

#include <cstdint>

namespace mimobox::virtio {

namespace status {
inline constexpr std::uint32_t acknowledge = 1, driver = 2, driver_ok = 4, features_ok = 8,
                               device_needs_reset = 64, failed = 128;
}
inline constexpr std::uint64_t feature_version_1 = 1ull << 32;
/// Interrupt causes, as the ISR status (PCI) and InterruptStatus (MMIO) registers show them.
inline constexpr std::uint32_t interrupt_used_buffer = 1, interrupt_config_change = 2;

class transport {
public:
    virtual ~transport() = default;
    /// The device returned buffers the driver wants to hear about.
    virtual void signal_used_buffers() = 0;
    /// The same, unconditionally: recovery from an interrupt that looks lost.
    virtual void resignal_used_buffers() = 0;
    /// The device found the driver breaking the contract: DEVICE_NEEDS_RESET plus a
    /// configuration-change interrupt, and the device is told nothing more until the driver
    /// resets it. The caller (the device) stops using its queues itself: the transport does
    /// not call back into it from here, so this is safe inside the device's own processing.
    virtual void fail_device() = 0;
};

}  // namespace mimobox::virtio
