// The virtio-vsock device model (device id 19): moves packets between the guest's virtqueues
// and the muxer. Sans-io with respect to KVM: it sees guest memory and queues only, so it is
// tested with the driver-side mock. A malformed packet is dropped; a broken descriptor chain
// fails the device (DEVICE_NEEDS_RESET) through the transport.
#pragma once

#include "virtio/transport.hpp"
#include "virtio/virtio_device.hpp"
#include "vsock/muxer.hpp"

#include <functional>
#include <optional>
#include <vector>

namespace mimobox::vsock {

class vsock_device final : public virtio::virtio_device {
public:
    enum queue_index : std::size_t { rx_queue = 0, tx_queue = 1, event_queue = 2 };
    static constexpr std::uint16_t queue_size = 256;
    /// Largest RW payload accepted from the guest (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
    static constexpr std::uint32_t max_payload = 64 * 1024;

    vsock_device(const memory::guest_memory& memory, muxer& mux) : memory_(memory), mux_(mux) {}
    /// The transport in front of this device, for interrupts and failure reports.
    void attach(virtio::transport& transport) { transport_ = &transport; }

    std::uint32_t device_id() const override { return 19; }
    std::uint64_t device_features() const override { return 0; }  // stream only, no extras
    std::size_t queue_count() const override { return 3; }
    std::uint16_t queue_max_size(std::size_t) const override { return queue_size; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t, std::span<const std::uint8_t>) override {}
    boost::system::error_code activate(std::uint64_t driver_features, std::vector<virtio::split_queue> queues) override;
    void notify(std::size_t queue) override;
    void reset() override;

    /// Drains the TX queue into the muxer, then fills RX buffers from it. Call after a
    /// notification or after the host side queued output. Raises the used-buffer interrupt
    /// when the driver asked for it, except for TX completions alone (see below).
    /// Bounded: at most one queue's worth of chains per queue and call, because a guest (a
    /// second vCPU, or the kicking one, which runs on) can republish buffers as fast as we
    /// take them and would otherwise hold the calling thread, and every VM on it, forever.
    /// Returns true when it stopped at that bound with work left; the reschedule callback
    /// has then been called, so a notification that came through notify() is not lost.
    bool process();
    /// Called (on the thread running process) when an activation stopped at its bound, and
    /// after a reset ended every connection: the owner arranges another turn (process() and
    /// completing what waits on the connections) after other work had its turn.
    void on_more_work(std::function<void()> reschedule) { reschedule_ = std::move(reschedule); }

    /// TX completions only free the driver's send buffers, so their interrupt can wait: the
    /// next RX interrupt covers them (the guest's handler scans every queue), and so does
    /// reaching tx_completion_batch of them. Until then interrupt_owed() holds, and the owner
    /// calls flush_owed_interrupt() after a short delay. Every guest interrupt costs a VM
    /// entry and a softirq; a request-response exchange this way costs one, not two.
    static constexpr std::uint32_t tx_completion_batch = 16;  // chains: far below queue_size
    bool interrupt_owed() const noexcept { return tx_completions_unsignalled_ > 0; }
    void flush_owed_interrupt();
    bool active() const noexcept { return !queues_.empty(); }
    std::uint64_t packets_dropped() const noexcept { return dropped_; }
    /// Packets wait for the guest while the guest has posted no receive buffer.
    bool starved_for_rx_buffers() const;
    /// Raises the used-buffer interrupt again (see vsock_host::lost_interrupt_watch); false,
    /// raising nothing, while the driver has not brought the device up.
    bool renotify();
    std::vector<std::pair<std::uint16_t, std::uint16_t>> queue_positions() const override;
    /// Tells the guest that every connection it had is gone (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
    /// on the event queue): after a restore, the host's side of them no longer exists. Linux
    /// then resets its connected sockets, re-reads the CID and keeps its listeners. False when
    /// the device is inactive or the driver posted no event buffer (nothing to tell then: a
    /// driver that has not set up its event queue has no connections either).
    bool send_transport_reset();
    /// After send_transport_reset, packets for the guest wait until the guest has handled the
    /// event, which it shows by posting a new event buffer: Linux runs the RX work before the
    /// event work when one interrupt carries both, so a connection request delivered earlier
    /// would be accepted and then reset by the event. TX goes on. The owner ends the wait
    /// itself (end_reset_wait) if the guest never posts one.
    bool waiting_for_reset_ack() const noexcept { return reset_pending_; }
    void end_reset_wait() noexcept { reset_pending_ = false; }
    /// Queue indices and the muxer's connections, for stall diagnostics.
    std::string describe() const;

private:
    struct pass {
        std::uint32_t chains = 0;  // returned to the driver
        bool budget_spent = false;
    };
    /// The next chain of queue `index` within this pass's budget; nothing once the budget is
    /// spent, the queue is empty, or the queue broke (then the device has failed).
    std::optional<virtio::descriptor_chain> next_chain(std::size_t index, pass& done);
    pass process_tx();
    void signal();
    pass process_rx();
    void fail(const boost::system::error_code& ec);
    std::optional<std::vector<std::uint8_t>> gather(const virtio::descriptor_chain& chain, std::size_t limit) const;

    const memory::guest_memory& memory_;
    muxer& mux_;
    virtio::transport* transport_ = nullptr;
    std::vector<virtio::split_queue> queues_;
    std::uint64_t dropped_ = 0;
    std::uint32_t tx_completions_unsignalled_ = 0;
    bool reset_pending_ = false;
    std::uint16_t event_avail_at_reset_ = 0;
    std::function<void()> reschedule_;
};

}  // namespace mimobox::vsock
