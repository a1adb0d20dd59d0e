// A split virtqueue seen from the device (virtio 1.2 §2.7). The guest owns the rings and may
// rewrite them at any moment, so every index and address is read once, copied, checked, and
// only then used; all guest memory goes through guest_memory::host_span.
#pragma once

#include "memory/guest_memory.hpp"
#include "virtio/virtio_errc.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <vector>

namespace mimobox::virtio {

struct queue_layout {
    std::uint16_t size = 0;       // power of two, <= the device's maximum
    std::uint64_t desc = 0;       // descriptor table, 16-byte aligned
    std::uint64_t driver = 0;     // available ring, 2-byte aligned
    std::uint64_t device = 0;     // used ring, 4-byte aligned
};

/// One buffer of a chain, already checked to lie inside guest RAM.
struct buffer {
    std::uint64_t addr;
    std::uint32_t len;
};

struct descriptor_chain {
    std::uint16_t head = 0;
    std::vector<buffer> readable;  // device reads these (driver -> device), in order
    std::vector<buffer> writable;  // device writes these (device -> driver), in order
    std::uint64_t readable_bytes() const noexcept;
    std::uint64_t writable_bytes() const noexcept;
};

class split_queue {
public:
    /// Per-chain byte limit: larger chains are a driver error, not an allocation.
    static constexpr std::uint64_t max_chain_bytes = 16u << 20;

    /// Checks alignment and that all three rings lie inside guest RAM (ring_out_of_memory).
    static boost::system::result<split_queue> create(const memory::guest_memory& mem, const queue_layout& layout);

    /// The next chain the driver made available, nullopt when there is none. An error means
    /// the driver broke the contract; the queue must not be used again until reset.
    boost::system::result<std::optional<descriptor_chain>> pop();
    /// Returns a chain to the driver with `written` bytes written into its writable buffers.
    boost::system::error_code push_used(std::uint16_t head, std::uint32_t written);
    /// Whether the driver wants an interrupt for used buffers (VIRTQ_AVAIL_F_NO_INTERRUPT clear).
    bool should_notify() const;
    /// Tells the driver whether we want its notifications (kicks) for new available buffers,
    /// through VIRTQ_USED_F_NO_NOTIFY. Only a hint: the driver may kick anyway, and one that
    /// read the old flag just before we changed it may not kick, so a device that turns them
    /// on must look at the ring once more afterwards (see driver_added_buffers). Written every
    /// time, not cached: the driver owns that memory and may have left anything there.
    void set_driver_notifications(bool wanted);
    /// Whether the driver has made buffers available that pop() has not taken yet. Ordered
    /// after a preceding set_driver_notifications(true) by a full fence.
    bool driver_added_buffers() const;
    /// Chains popped and not yet returned.
    std::size_t in_flight() const noexcept { return in_flight_; }
    const queue_layout& layout() const noexcept { return layout_; }
    std::uint16_t next_avail() const noexcept { return next_avail_; }
    /// Puts a fresh queue where a snapshotted one stood (nothing in flight: devices hold no
    /// chain between calls). Any pair is safe: pop() checks the driver's index against it.
    void set_position(std::uint16_t next_avail, std::uint16_t next_used) noexcept {
        next_avail_ = next_avail;
        next_used_ = next_used;
    }
    std::uint16_t next_used() const noexcept { return next_used_; }
    /// The driver's avail index as it is in guest memory now (diagnostics).
    std::uint16_t driver_avail_index() const { return load_u16(layout_.driver + 2); }
    /// The used index the driver last said it had handled: `used_event`, after the avail ring.
    /// Linux writes it whenever it re-enables callbacks, with VIRTIO_RING_F_EVENT_IDX or
    /// without (we offer none), so in a stall report it tells whether the guest saw our last
    /// used buffers. Diagnostics only: the guest may write anything there.
    std::uint16_t driver_used_event() const { return load_u16(layout_.driver + 4 + 2u * layout_.size); }

private:
    split_queue(const memory::guest_memory& mem, const queue_layout& layout) : mem_(&mem), layout_(layout) {}
    boost::system::result<descriptor_chain> walk(std::uint16_t head) const;
    std::uint16_t load_u16(std::uint64_t addr) const;  // inside a checked ring

    const memory::guest_memory* mem_;
    queue_layout layout_;
    std::uint16_t next_avail_ = 0;
    std::uint16_t next_used_ = 0;
    std::size_t in_flight_ = 0;
    std::vector<bool> outstanding_;  // heads popped and not yet returned
};

}  // namespace mimobox::virtio
