// The transport-independent half of a virtio device's register file (virtio 1.2 §2, §3.1): the
// status handshake, feature negotiation, per-queue configuration and its checks, activation
// and reset. virtio-mmio and virtio-pci only lay these out differently, so both transports
// delegate here and the rules live once.
#pragma once

#include "memory/guest_memory.hpp"
#include "snapshot/state_stream.hpp"
#include "virtio/transport.hpp"
#include "virtio/virtio_device.hpp"

#include <cstdint>
#include <vector>

namespace mimobox::virtio {

class device_handshake {
public:
    struct queue_registers {
        std::uint16_t size = 0;
        bool ready = false;
        std::uint64_t desc = 0, driver = 0, device = 0;
        std::uint16_t msix_vector = 0xffff;  // virtio-pci only (VIRTIO_MSI_NO_VECTOR)
    };

    device_handshake(virtio_device& device, const memory::guest_memory& memory)
        : device_(device), memory_(memory), queues_(device.queue_count()) {}

    virtio_device& device() noexcept { return device_; }
    std::uint32_t status() const noexcept { return status_; }
    bool active() const noexcept { return active_; }
    std::uint64_t driver_features() const noexcept { return driver_features_; }
    std::uint32_t config_generation() const noexcept { return config_generation_; }
    bool needs_reset() const noexcept { return status_ & status::device_needs_reset; }

    /// 32 bits of the offered features (the device's plus VERSION_1), word `select`.
    std::uint32_t device_features_word(std::uint32_t select) const;
    /// Accepted only between DRIVER and FEATURES_OK (spec §3.1.1).
    void set_driver_features_word(std::uint32_t select, std::uint32_t value);

    void select_queue(std::uint32_t index) noexcept { queue_sel_ = index; }
    std::uint32_t selected_index() const noexcept { return queue_sel_; }
    /// The selected queue, or null when the selector points past the device's queues.
    queue_registers* selected_queue() noexcept { return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr; }
    const std::vector<queue_registers>& queues() const noexcept { return queues_; }
    std::uint16_t selected_max_size() const { return queue_sel_ < queues_.size() ? device_.queue_max_size(queue_sel_) : 0; }
    /// The selected queue's size and ring addresses may change: after FEATURES_OK, before
    /// DRIVER_OK, while the queue is not enabled.
    bool queue_configurable() const;
    /// QueueReady/queue_enable: 1 checks the rings now (a bad setup fails the device here, not
    /// on the first notification); 0 disables (virtio-mmio only; PCI drivers may not).
    /// Returns false when the device must be failed.
    bool set_selected_ready(bool ready);

    /// A status write. Returns false when the device must be failed (activation refused).
    /// Writing 0 resets (the caller clears its own interrupt state too).
    bool write_status(std::uint32_t value);
    /// Marks DEVICE_NEEDS_RESET; false if it already was.
    bool mark_needs_reset();
    void reset();
    /// Every queue's size reads as the device's maximum until the driver writes its own
    /// (virtio-pci's queue_size; virtio-mmio's QueueNum starts at 0 instead).
    void offer_max_sizes();

    /// The registers and, while active, each queue's position (virtio_device::queue_positions).
    void save(snapshot::state_writer& out) const;
    /// Sets what save() wrote into a fresh handshake (guest memory mapped). An active device is
    /// activated again on queues placed where they stood; nothing in the input is trusted: ring
    /// addresses are checked as at DRIVER_OK, and a state no driver could have reached
    /// (active without FEATURES_OK, a queue size above the maximum) is corrupt_state.
    boost::system::error_code restore(snapshot::state_reader& in);

private:
    virtio_device& device_;
    const memory::guest_memory& memory_;
    std::uint32_t status_ = 0;
    std::uint64_t driver_features_ = 0;
    std::uint32_t queue_sel_ = 0;
    std::uint32_t config_generation_ = 0;
    std::vector<queue_registers> queues_;
    bool active_ = false;
};

}  // namespace mimobox::virtio
