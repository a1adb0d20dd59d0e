// PCI configuration mechanism 1 (ports 0xcf8-0xcff) for one bus with single-function devices,
// and the host bridge at device 0 that Linux's probe looks for before it trusts the mechanism
// (arch/x86/pci/direct.c: pci_sanity_check wants a host bridge or a VGA device). No ACPI, no
// MMCONFIG: the guest finds the bus by probing these ports, as kvmtool's guests do.
// Served on the vCPU thread that makes the access (a boot makes several hundred; see
// virtio_vsock_link), so read() and write() are safe from any thread: the latch is atomic
// and functions lock their own state. Linux serializes configuration accesses itself; a guest
// that races two vCPUs on the latch only confuses its own accesses.
#pragma once

#include "devices/bus_device.hpp"
#include "devices/pci_function.hpp"
#include "snapshot/state_stream.hpp"

#include <array>
#include <atomic>
#include <cstdint>

namespace mimobox::devices {

class pci_host final : public bus_device {
public:
    static constexpr std::uint16_t port_base = 0xcf8;
    static constexpr std::uint16_t port_count = 8;
    static constexpr unsigned max_devices = 32;

    /// Places `function` at device `slot` (1..31; 0 is the host bridge). False if taken. Before
    /// the guest runs only.
    bool add(unsigned slot, pci_function& function);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    /// The address latch (the functions save their own state).
    void save(snapshot::state_writer& out) const { out.u32(address_.load()); }
    boost::system::error_code restore(snapshot::state_reader& in) {
        address_.store(in.u32());
        return in.error();
    }

private:
    class host_bridge final : public pci_function {
    public:
        void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override;
        void config_write(std::uint32_t, std::span<const std::uint8_t>) override {}
    };
    /// The function and register the address latch selects, or null (absent or disabled).
    pci_function* selected(std::uint64_t data_offset, std::size_t width, std::uint32_t& reg) const;

    std::atomic<std::uint32_t> address_{0};
    host_bridge bridge_;
    std::array<pci_function*, max_devices> slots_{&bridge_};
};

}  // namespace mimobox::devices
