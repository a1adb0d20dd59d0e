#include "vsock/vsock_device.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::vsock {

void vsock_device::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    // le64 guest_cid; the driver reads it as two 32-bit halves.
    const std::uint64_t cid = mux_.guest_cid();
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t at = offset + i;
        data[i] = at < 8 ? static_cast<std::uint8_t>(cid >> (8 * at)) : 0;
    }
}

boost::system::error_code vsock_device::activate(std::uint64_t, std::vector<virtio::split_queue> queues) {
    if (queues.size() != queue_count()) return virtio::virtio_errc::ring_out_of_memory;
    queues_ = std::move(queues);
    return {};
}

void vsock_device::notify(std::size_t) { process(); }

void vsock_device::reset() {
    queues_.clear();
    reset_pending_ = false;
    tx_completions_unsignalled_ = 0;
    mux_.fail_all(vsock_errc::connection_reset);  // the driver's reset ends every stream
    // Host operations waiting on those streams learn of it in the owner's next turn; without
    // this, a reset with no packet after it left them waiting forever.
    if (reschedule_) reschedule_();
}

void vsock_device::fail(const boost::system::error_code&) {
    reset();
    if (transport_) transport_->fail_device();
}

bool vsock_device::process() {
    if (!active()) return false;
    const pass tx = process_tx();
    if (!active()) return false;
    if (reset_pending_ && queues_[event_queue].driver_avail_index() != event_avail_at_reset_) reset_pending_ = false;
    pass rx_pass = reset_pending_ ? pass{} : process_rx();
    if (!active()) return false;
    bool rx_used = rx_pass.chains > 0;
    // Kicks for new RX buffers matter only while packets wait for them: otherwise the next
    // process() finds the buffers anyway. The guest refills after every RX interrupt, and each
    // of those kicks would cost it a VM exit and us a wake-up for nothing.
    auto& rx = queues_[rx_queue];
    const bool starved = starved_for_rx_buffers();
    rx.set_driver_notifications(starved);
    if (starved && !reset_pending_ && !rx_pass.budget_spent && rx.driver_added_buffers()) {  // refilled just before it saw the flag change
        rx_pass = process_rx();
        rx_used = rx_pass.chains > 0 || rx_used;
        if (!active()) return false;
    }
    tx_completions_unsignalled_ += tx.chains;
    if (rx_used && queues_[rx_queue].should_notify()) signal();
    else if (tx_completions_unsignalled_ >= tx_completion_batch) flush_owed_interrupt();
    const bool more = tx.budget_spent || rx_pass.budget_spent;
    if (more && reschedule_) reschedule_();
    return more;
}

void vsock_device::signal() {
    tx_completions_unsignalled_ = 0;  // the guest's handler reclaims TX buffers too
    if (transport_) transport_->signal_used_buffers();
}

void vsock_device::flush_owed_interrupt() {
    if (!active() || tx_completions_unsignalled_ == 0) return;
    if (queues_[tx_queue].should_notify()) return signal();
    tx_completions_unsignalled_ = 0;  // the driver polls for them itself
}

std::optional<std::vector<std::uint8_t>> vsock_device::gather(const virtio::descriptor_chain& chain, std::size_t limit) const {
    std::vector<std::uint8_t> out;
    out.reserve(std::min<std::uint64_t>(chain.readable_bytes(), limit));
    for (const auto& b : chain.readable) {
        const std::size_t take = std::min<std::size_t>(b.len, limit - out.size());
        const std::size_t at = out.size();
        out.resize(at + take);
        // split_queue checked the buffer lies in guest RAM; read() checks again and copies.
        if (memory_.read(memory::guest_addr(b.addr), std::as_writable_bytes(std::span(out.data() + at, take))))
            return std::nullopt;
        if (out.size() == limit) break;
    }
    return out;
}

std::optional<virtio::descriptor_chain> vsock_device::next_chain(std::size_t index, pass& done) {
    auto& q = queues_[index];
    if (done.chains == q.layout().size) {
        done.budget_spent = true;
        return std::nullopt;
    }
    auto next = q.pop();
    if (!next) {
        fail(next.error());
        return std::nullopt;
    }
    return std::move(*next);
}

vsock_device::pass vsock_device::process_tx() {
    pass done;
    auto& q = queues_[tx_queue];
    for (;;) {
        auto next = next_chain(tx_queue, done);
        if (!next) return done;
        const auto& chain = *next;
        // Header and payload may be split across descriptors in any way: read them as a stream.
        auto bytes = gather(chain, header_size + max_payload);
        if (bytes && bytes->size() >= header_size) {
            const header h = decode(std::span<const std::uint8_t, header_size>(bytes->data(), header_size));
            const std::size_t payload_len = bytes->size() - header_size;
            if (h.len <= payload_len && (h.operation == op::rw || h.len == 0)) {
                mux_.on_guest_packet(h, std::span(bytes->data() + header_size, h.len));
            } else {
                ++dropped_;  // length lies about the payload, or payload on a control packet
            }
        } else {
            ++dropped_;
        }
        if (auto ec = q.push_used(chain.head, 0)) {
            fail(ec);
            return done;
        }
        ++done.chains;
    }
}

vsock_device::pass vsock_device::process_rx() {
    pass done;
    auto& q = queues_[rx_queue];
    while (mux_.has_output()) {
        // No buffers: the muxer keeps its packets until the guest posts more.
        auto next = next_chain(rx_queue, done);
        if (!next) break;
        const auto& chain = *next;
        std::uint32_t written = 0;
        bool nothing_to_send = false;
        if (chain.writable_bytes() >= header_size) {
            const std::size_t room = std::min<std::uint64_t>(chain.writable_bytes() - header_size, max_payload);
            if (auto p = mux_.poll_output(room)) {
                std::vector<std::uint8_t> bytes(header_size + p->payload.size());
                p->hdr.len = static_cast<std::uint32_t>(p->payload.size());
                auto hdr = encode(p->hdr);
                std::memcpy(bytes.data(), hdr.data(), header_size);
                std::copy(p->payload.begin(), p->payload.end(), bytes.begin() + header_size);
                std::size_t off = 0;
                for (const auto& b : chain.writable) {
                    if (off == bytes.size()) break;
                    const std::size_t n = std::min<std::size_t>(b.len, bytes.size() - off);
                    if (memory_.write(memory::guest_addr(b.addr), std::as_bytes(std::span(bytes.data() + off, n)))) break;
                    off += n;
                }
                written = static_cast<std::uint32_t>(off);
            } else {
                nothing_to_send = true;  // has_output promised more than poll_output gave
            }
        }
        if (auto ec = q.push_used(chain.head, written)) {
            fail(ec);
            return done;
        }
        ++done.chains;
        if (nothing_to_send) break;  // never spend the guest's buffers on nothing in a loop
    }
    return done;
}

bool vsock_device::starved_for_rx_buffers() const {
    return active() && mux_.has_output() && !queues_[rx_queue].driver_added_buffers();
}

bool vsock_device::renotify() {
    if (!active() || !transport_) return false;
    transport_->resignal_used_buffers();
    return true;
}

std::vector<std::pair<std::uint16_t, std::uint16_t>> vsock_device::queue_positions() const {
    std::vector<std::pair<std::uint16_t, std::uint16_t>> out;
    for (const auto& q : queues_) out.emplace_back(q.next_avail(), q.next_used());
    return out;
}

bool vsock_device::send_transport_reset() {
    if (!active()) return false;
    auto& q = queues_[event_queue];
    auto next = q.pop();
    if (!next) {
        fail(next.error());
        return false;
    }
    if (!*next) return false;
    const auto& chain = **next;
    // struct virtio_vsock_event { le32 id; }, id 0 = TRANSPORT_RESET; a chain too short for it
    // goes back with nothing written, which the driver ignores.
    std::uint32_t written = 0;
    if (!chain.writable.empty() && chain.writable.front().len >= 4) {
        const std::uint8_t reset_event[4] = {0, 0, 0, 0};
        if (!memory_.write(memory::guest_addr(chain.writable.front().addr), std::as_bytes(std::span(reset_event)))) written = 4;
    }
    if (auto ec = q.push_used(chain.head, written)) {
        fail(ec);
        return false;
    }
    if (written == 4) {
        reset_pending_ = true;
        event_avail_at_reset_ = q.driver_avail_index();
    }
    signal();
    return written == 4;
}

std::string vsock_device::describe() const {
    std::string out = "vsock device active=" + std::to_string(active()) + " dropped=" + std::to_string(dropped_) +
                      " reset_ack_pending=" + std::to_string(reset_pending_) + "\n";
    static constexpr const char* names[] = {"rx", "tx", "event"};
    for (std::size_t i = 0; i < queues_.size(); ++i) {
        const auto& q = queues_[i];
        out += std::string("  queue ") + names[i] + ": driver avail=" + std::to_string(q.driver_avail_index()) +
               " consumed=" + std::to_string(q.next_avail()) + " used=" + std::to_string(q.next_used()) +
               " in_flight=" + std::to_string(q.in_flight()) + " wants_interrupt=" + std::to_string(q.should_notify()) +
               " driver_used_event=" + std::to_string(q.driver_used_event()) + "\n";
    }
    return out + mux_.describe();
}

}  // namespace mimobox::vsock
