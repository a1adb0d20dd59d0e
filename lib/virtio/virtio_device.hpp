// What a virtio device model provides to the MMIO transport. The transport owns the register
// file and the queues' configuration; the device owns what happens on them.
#pragma once

#include "virtio/split_queue.hpp"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace mimobox::virtio {

class virtio_device {
public:
    virtual ~virtio_device() = default;
    virtual std::uint32_t device_id() const = 0;
    /// Feature bits offered (the transport adds VIRTIO_F_VERSION_1).
    virtual std::uint64_t device_features() const = 0;
    virtual std::size_t queue_count() const = 0;
    virtual std::uint16_t queue_max_size(std::size_t queue) const = 0;
    /// Device-specific configuration space (offset from 0x100).
    virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
    /// DRIVER_OK: the queues are ready and validated. An error sets DEVICE_NEEDS_RESET.
    virtual boost::system::error_code activate(std::uint64_t driver_features, std::vector<split_queue> queues) = 0;
    /// The driver wrote QueueNotify (when no ioeventfd took it).
    virtual void notify(std::size_t queue) = 0;
    /// Status written 0: drop all queue state; the device returns to its initial state.
    virtual void reset() = 0;

    /// Where each queue stands, for a snapshot: (next_avail, next_used) per queue while the
    /// device is active, empty otherwise. Devices hold no chain between calls on their strand,
    /// so these two indices are a queue's whole device-side state.
    virtual std::vector<std::pair<std::uint16_t, std::uint16_t>> queue_positions() const { return {}; }
};

}  // namespace mimobox::virtio
