// virtio-pci, modern interface (virtio 1.2 §4.1) in front of one virtio_device: a PCI function
// whose vendor capabilities point at the common configuration, ISR and device configuration
// (BAR 0, memory) and at the notification ports (BAR 2, I/O), with MSI-X (table and pending
// bits in BAR 0).
//
// Why PCI next to virtio-mmio: a virtio-mmio kick is an MMIO write, which KVM must decode and
// emulate, and every interrupt costs the guest a status read and an acknowledge, two more
// such exits. Here a kick is a port write (KVM reads port and value from the exit
// information, no decoding) and the interrupt is an MSI, with nothing to read or acknowledge.
//
// The MSI-X table has two entries, so Linux takes one vector for configuration changes and one
// shared by every queue (vp_find_vqs falls back to that when it cannot get one per queue): its
// handler then scans every queue, which the vsock device relies on when it folds TX
// completions into the next RX interrupt. BARs are placed by the VMM and stay there: sizing
// works, other BAR writes are ignored. No INTx: a driver that will not use MSI-X gets no
// interrupts.
// Threads: BAR accesses, notifications and interrupts come from the VM's strand; configuration
// space accesses come from vCPU threads (pci_host). What both touch (the command register, BAR
// sizing, MSI-X control, table and pending bits) is under msix_mutex_; the rest is the strand's.
#pragma once

#include "devices/bus_device.hpp"
#include "devices/pci_function.hpp"
#include "memory/guest_memory.hpp"
#include "virtio/device_handshake.hpp"
#include "virtio/msi_sink.hpp"
#include "virtio/transport.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>

namespace mimobox::virtio {

/// Offsets of the common configuration fields (struct virtio_pci_common_cfg,
/// include/uapi/linux/virtio_pci.h) in the common configuration window.
namespace pci_common_cfg {
enum : std::uint64_t {
    cc_device_feature_select = 0x00, cc_device_feature = 0x04, cc_driver_feature_select = 0x08,
    cc_driver_feature = 0x0c, cc_config_msix_vector = 0x10, cc_num_queues = 0x12, cc_device_status = 0x14,
    cc_config_generation = 0x15, cc_queue_select = 0x16, cc_queue_size = 0x18, cc_queue_msix_vector = 0x1a,
    cc_queue_enable = 0x1c, cc_queue_notify_off = 0x1e, cc_queue_desc = 0x20, cc_queue_driver = 0x28,
    cc_queue_device = 0x30, cc_size = 0x38,
};
}  // namespace pci_common_cfg

class pci_transport final : public transport, public devices::pci_function {
public:
    static constexpr std::uint64_t registers_size = 0x1000;  // BAR 0
    static constexpr std::uint32_t notify_ports = 16;        // BAR 2
    static constexpr std::uint32_t notify_multiplier = 2;    // queue q is notified at port 2q
    static constexpr std::uint16_t msix_vectors = 2;
    static constexpr std::uint16_t no_vector = 0xffff;
    // Where each structure lies in BAR 0.
    static constexpr std::uint32_t common_offset = 0x000, isr_offset = 0x100, device_offset = 0x200,
                                   msix_table_offset = 0x400, msix_pba_offset = 0x800;

    struct placement {
        std::uint64_t registers;  ///< BAR 0: guest-physical, in the MMIO gap, 4 KiB aligned
        std::uint16_t notify;     ///< BAR 2: first port, aligned to notify_ports
    };

    pci_transport(virtio_device& device, const memory::guest_memory& memory, msi_sink& msi, placement at);

    // Configuration space (devices::pci_function).
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override;
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override;

    /// BAR 0 and BAR 2, for the MMIO and port buses (offsets relative to each BAR).
    devices::bus_device& registers() noexcept { return registers_; }
    devices::bus_device& notifications() noexcept { return notifications_; }
    const placement& where() const noexcept { return at_; }
    /// The port a queue's notification is written to (the value written is the queue index).
    std::uint16_t notify_port(std::size_t queue) const noexcept {
        return static_cast<std::uint16_t>(at_.notify + queue * notify_multiplier);
    }

    void signal_used_buffers() override;
    void resignal_used_buffers() override { signal_used_buffers(); }
    void fail_device() override;

    std::uint32_t device_status() const noexcept { return handshake_.status(); }
    bool active() const noexcept { return handshake_.active(); }
    bool msix_enabled() const {
        std::lock_guard lock(msix_mutex_);
        return msix_control_ & msix_enable;
    }
    /// Snapshot state: configuration space (command, BAR sizing, MSI-X control, table and
    /// pending bits), the common configuration and the handshake. restore() is for a fresh
    /// transport whose guest memory is mapped; a pending vector is delivered once the
    /// restored VM runs (deliver_pending after start).
    void save(snapshot::state_writer& out) const;
    boost::system::error_code restore(snapshot::state_reader& in);
    /// Sends the vectors that were pending (masked) when the state was saved and are not masked now.
    void deliver_pending() {
        std::lock_guard lock(msix_mutex_);
        deliver_pending_locked();
    }

    /// For stall diagnostics: MSI messages sent, and those held back by a mask (pending).
    std::uint64_t messages_sent() const noexcept { return messages_sent_.load(std::memory_order_relaxed); }
    std::uint64_t messages_held() const noexcept { return messages_held_.load(std::memory_order_relaxed); }

private:
    static constexpr std::uint16_t msix_enable = 0x8000, msix_function_mask = 0x4000;
    struct msix_entry {
        std::uint32_t address_low = 0, address_high = 0, data = 0, control = 1;  // masked at reset
    };
    struct bar0 final : devices::bus_device {
        pci_transport& t;
        explicit bar0(pci_transport& owner) : t(owner) {}
        void read(std::uint64_t offset, std::span<std::uint8_t> data) override { t.read_registers(offset, data); }
        void write(std::uint64_t offset, std::span<const std::uint8_t> data) override { t.write_registers(offset, data); }
    };
    struct bar2 final : devices::bus_device {
        pci_transport& t;
        explicit bar2(pci_transport& owner) : t(owner) {}
        void read(std::uint64_t, std::span<std::uint8_t> data) override;
        void write(std::uint64_t offset, std::span<const std::uint8_t> data) override { t.write_notify(offset, data); }
    };

    void read_registers(std::uint64_t offset, std::span<std::uint8_t> data);
    void write_registers(std::uint64_t offset, std::span<const std::uint8_t> data);
    std::uint64_t read_common(std::uint64_t offset, std::size_t width);
    void write_common(std::uint64_t offset, std::size_t width, std::uint64_t value);
    void write_msix_table(std::uint64_t offset, std::size_t width, std::uint64_t value);
    void write_notify(std::uint64_t offset, std::span<const std::uint8_t> data);
    void reset_transport();
    std::uint16_t checked_vector(std::uint16_t vector) const noexcept { return vector < msix_vectors ? vector : no_vector; }
    void send_vector(std::uint16_t vector);
    // With msix_mutex_ held:
    void send_vector_locked(std::uint16_t vector);
    void deliver_pending_locked();

    device_handshake handshake_;
    msi_sink& msi_;
    placement at_;
    bar0 registers_{*this};
    bar2 notifications_{*this};
    // The strand's alone.
    std::uint32_t device_features_sel_ = 0, driver_features_sel_ = 0;
    std::uint16_t config_vector_ = no_vector;
    std::uint8_t isr_ = 0;
    // Shared with vCPU threads.
    mutable std::mutex msix_mutex_;
    std::uint16_t command_ = 0;
    bool sizing_bar0_ = false, sizing_bar2_ = false;
    std::uint16_t msix_control_ = 0;
    std::array<msix_entry, msix_vectors> msix_table_{};
    std::uint64_t msix_pending_ = 0;
    std::atomic<std::uint64_t> messages_sent_{0}, messages_held_{0};
};

}  // namespace mimobox::virtio
