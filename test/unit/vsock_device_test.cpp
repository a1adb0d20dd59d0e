#include "vsock/vsock_device.hpp"

#define BOOST_TEST_MODULE vsock_device
#include <boost/test/unit_test.hpp>

#include "../support/vsock_rig.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

using namespace mimobox;
using namespace mimobox::vsock;
namespace st = virtio::status;

namespace {

constexpr std::uint64_t cid = 3;

struct fixture : test::vsock_rig {};

std::vector<std::uint8_t> pattern(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 7 + 3);
    return v;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(vsock_device_model, fixture)

BOOST_AUTO_TEST_CASE(config_space_carries_the_guest_cid) {
    BOOST_TEST(rd(0x100) == cid);
    BOOST_TEST(rd(0x104) == 0u);
}

BOOST_AUTO_TEST_CASE(guest_request_to_listener_gets_response_in_rx) {
    mux.listen(1234);
    post_rx_buffers(4);
    guest_send(guest_header(op::request, 5000, 1234));
    auto got = received();
    BOOST_REQUIRE(got.size() == 1u);
    BOOST_TEST((got[0].first.operation == op::response));
    BOOST_TEST(got[0].first.dst_port == 5000u);
    BOOST_TEST(mux.take_accepted(1234).has_value());
    BOOST_TEST(irq.count > 0);
}

BOOST_AUTO_TEST_CASE(header_split_across_descriptors_is_reassembled) {
    mux.listen(1234);
    post_rx_buffers(4);
    guest_send(guest_header(op::request, 5000, 1234), {}, 10);  // 10 + 34 bytes
    BOOST_TEST(received().size() == 1u);
    auto ep = mux.take_accepted(1234).value();
    guest_send(guest_header(op::rw, 5000, 1234, 100), pattern(100), 30);  // header split, payload tail
    BOOST_TEST(mux.find(ep)->readable() == 100u);
    std::vector<std::uint8_t> out(100);
    mux.find(ep)->read(out);
    BOOST_TEST(out == pattern(100));
}

BOOST_AUTO_TEST_CASE(host_data_fills_rx_buffers_in_order_within_their_size) {
    mux.listen(1234);
    post_rx_buffers(2);
    guest_send(guest_header(op::request, 5000, 1234));
    (void)received();
    auto ep = mux.take_accepted(1234).value();
    auto data = pattern(10000);
    BOOST_TEST(mux.find(ep)->write(data) == data.size());
    post_rx_buffers(8);  // 4096-byte buffers: 4052 bytes of payload each
    auto got = received();
    std::vector<std::uint8_t> joined;
    for (auto& [h, p] : got) {
        BOOST_TEST((h.operation == op::rw));
        BOOST_TEST(h.len == p.size());
        joined.insert(joined.end(), p.begin(), p.end());
    }
    BOOST_TEST(joined == data);
}

BOOST_AUTO_TEST_CASE(output_waits_for_rx_buffers) {
    mux.listen(1234);
    guest_send(guest_header(op::request, 5000, 1234));  // no RX buffers posted yet
    BOOST_TEST(mux.has_output());
    post_rx_buffers(1);
    BOOST_TEST(received().size() == 1u);
}

BOOST_AUTO_TEST_CASE(rx_refills_are_not_kicked_unless_packets_wait_for_them) {
    mux.listen(1234);
    post_rx_buffers(1);
    BOOST_TEST(!rx->device_wants_kicks());  // buffers and nothing to send: a refill needs no kick
    guest_send(guest_header(op::request, 5000, 1234));
    guest_send(guest_header(op::request, 5001, 1234));  // its RESPONSE finds no buffer
    BOOST_TEST(received().size() == 1u);
    BOOST_TEST(mux.has_output());
    BOOST_TEST(rx->device_wants_kicks());  // starved: the refill's kick is what we wait for
    post_rx_buffers(2);
    BOOST_TEST(received().size() == 1u);
    BOOST_TEST(!rx->device_wants_kicks());
}

BOOST_AUTO_TEST_CASE(rx_buffers_posted_without_a_kick_still_carry_later_packets) {
    mux.listen(1234);
    post_rx_buffers(1);
    BOOST_REQUIRE(!rx->device_wants_kicks());
    rx->offer_quietly(4096);  // the driver saw NO_NOTIFY and did not kick
    guest_send(guest_header(op::request, 5000, 1234));
    guest_send(guest_header(op::request, 5001, 1234));
    BOOST_TEST(received().size() == 2u);
    BOOST_TEST(!mux.has_output());
}

// An established connection with the interrupt from its handshake acknowledged.
endpoint connected(fixture& f) {
    f.mux.listen(1234);
    f.post_rx_buffers(8);
    f.guest_send(f.guest_header(op::request, 5000, 1234));
    BOOST_REQUIRE(f.received().size() == 1u);
    f.wr(0x64, 1);  // the guest acknowledges the interrupt
    f.irq.count = 0;
    return f.mux.take_accepted(1234).value();
}

BOOST_AUTO_TEST_CASE(tx_completions_alone_wait_for_the_owed_interrupt_flush) {
    auto ep = connected(*this);
    guest_send(guest_header(op::rw, 5000, 1234, 10), pattern(10));
    BOOST_TEST(mux.find(ep)->readable() == 10u);
    BOOST_TEST(tx->take_used().has_value());  // completed in the ring...
    BOOST_TEST(irq.count == 0);               // ...without an interrupt yet
    BOOST_TEST(dev.interrupt_owed());
    dev.flush_owed_interrupt();
    BOOST_TEST(irq.count == 1);
    BOOST_TEST(!dev.interrupt_owed());
    dev.flush_owed_interrupt();  // nothing owed: nothing raised
    BOOST_TEST(irq.count == 1);
}

BOOST_AUTO_TEST_CASE(the_next_rx_interrupt_carries_owed_tx_completions) {
    auto ep = connected(*this);
    guest_send(guest_header(op::rw, 5000, 1234, 10), pattern(10));
    BOOST_TEST(irq.count == 0);
    BOOST_TEST(mux.find(ep)->write(pattern(20)) == 20u);  // the host answers
    dev.process();
    BOOST_TEST(irq.count == 1);
    BOOST_TEST(!dev.interrupt_owed());
    BOOST_TEST(received().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_batch_of_tx_completions_interrupts_without_waiting) {
    auto ep = connected(*this);
    for (std::uint32_t i = 0; i < vsock_device::tx_completion_batch; ++i) {
        BOOST_TEST(irq.count == 0);
        guest_send(guest_header(op::rw, 5000, 1234, 10), pattern(10));
    }
    BOOST_TEST(irq.count == 1);
    BOOST_TEST(!dev.interrupt_owed());
    BOOST_TEST(mux.find(ep)->readable() == 10u * vsock_device::tx_completion_batch);
}

BOOST_AUTO_TEST_CASE(packet_whose_length_exceeds_its_payload_is_dropped) {
    mux.listen(1234);
    post_rx_buffers(4);
    guest_send(guest_header(op::request, 5000, 1234));
    (void)received();
    guest_send(guest_header(op::rw, 5000, 1234, 5000), pattern(10));
    BOOST_TEST(dev.packets_dropped() == 1u);
    BOOST_TEST(dev.active());
}

BOOST_AUTO_TEST_CASE(broken_tx_chain_fails_the_device_and_its_connections) {
    mux.listen(1234);
    post_rx_buffers(4);
    guest_send(guest_header(op::request, 5000, 1234));
    (void)received();
    auto ep = mux.take_accepted(1234).value();
    tx->write_descriptor(9, 0x400000, 64, test::mock_driver::f_next, 9);  // a loop
    tx->make_available(9);
    wr(0x50, 1);
    BOOST_TEST(!dev.active());
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
    BOOST_TEST((mux.find(ep)->error() == vsock_errc::connection_reset));
}

BOOST_AUTO_TEST_CASE(echo_of_64k_through_the_rings_is_byte_exact) {
    mux.listen(1234);
    post_rx_buffers(4);
    guest_send(guest_header(op::request, 5000, 1234));
    (void)received();
    auto ep = mux.take_accepted(1234).value();
    auto data = pattern(64 * 1024);
    // guest -> host in 4 KiB packets
    for (std::size_t off = 0; off < data.size(); off += 4096) {
        std::vector<std::uint8_t> chunk(data.begin() + static_cast<std::ptrdiff_t>(off), data.begin() + static_cast<std::ptrdiff_t>(off + 4096));
        guest_send(guest_header(op::rw, 5000, 1234, 4096), chunk);
    }
    std::vector<std::uint8_t> back(data.size());
    BOOST_TEST(mux.find(ep)->read(back) == data.size());
    // host -> guest
    std::size_t sent = 0;
    std::vector<std::uint8_t> echoed;
    while (echoed.size() < data.size()) {
        sent += mux.find(ep)->write(std::span(back).subspan(sent));
        post_rx_buffers(8);
        for (auto& [h, p] : received())
            if (h.operation == op::rw) echoed.insert(echoed.end(), p.begin(), p.end());
    }
    BOOST_TEST(echoed == data);
}

BOOST_AUTO_TEST_CASE(driver_reset_ends_connections_and_deactivates) {
    mux.listen(1234);
    post_rx_buffers(2);
    guest_send(guest_header(op::request, 5000, 1234));
    auto ep = mux.take_accepted(1234).value();
    wr(0x70, 0);
    BOOST_TEST(!dev.active());
    BOOST_TEST((mux.find(ep)->error() == vsock_errc::connection_reset));
}

BOOST_AUTO_TEST_CASE(a_renotify_raises_an_edge_while_the_driver_is_up_and_nothing_after_a_reset) {
    irq.count = 0;
    BOOST_TEST(dev.renotify());
    BOOST_TEST(irq.count == 1);
    BOOST_TEST((rd(0x60) & virtio::interrupt_used_buffer) != 0u);
    wr(0x70, 0);  // the driver resets the device
    BOOST_TEST(!dev.renotify());
    BOOST_TEST(irq.count == 1);
}

// A hostile guest that keeps a queue full with one chain: every ring slot names the same head,
// and a thread (a second vCPU, or the kicking one, which runs on after its kick) keeps the
// available index one queue ahead of what the device returned. process() once looped for as
// long as the guest kept this up, holding the thread that every other VM on it shares.
struct republishing_guest {
    republishing_guest(const memory::guest_memory& mem, const test::mock_driver& queue, std::uint16_t head)
        : mem_(mem), layout_(queue.layout()) {
        for (std::uint16_t slot = 0; slot < layout_.size; ++slot)
            (void)mem.write_obj(memory::guest_addr(layout_.driver + 4 + 2u * slot), head);
        const std::uint16_t start = used_index();
        store_avail(static_cast<std::uint16_t>(start + layout_.size));
        thread_ = std::thread([this] {
            // Bounded, so a device without the fix fails the test instead of hanging it.
            const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
            while (!stop_.load() && std::chrono::steady_clock::now() < until)
                store_avail(static_cast<std::uint16_t>(used_index() + layout_.size));
        });
    }
    ~republishing_guest() { finish(); }
    void finish() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    std::uint16_t used_index() const { return ref(layout_.device + 2).load(std::memory_order_acquire); }

private:
    std::atomic_ref<std::uint16_t> ref(std::uint64_t addr) const {
        return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(mem_.host_span(memory::guest_addr(addr), 2).value().data()));
    }
    void store_avail(std::uint16_t idx) { ref(layout_.driver + 2).store(idx, std::memory_order_release); }
    const memory::guest_memory& mem_;
    virtio::queue_layout layout_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

BOOST_AUTO_TEST_CASE(a_guest_republishing_tx_buffers_cannot_hold_process_forever) {
    auto ep = connected(*this);
    int reschedules = 0;
    dev.on_more_work([&] { ++reschedules; });
    const auto hdr = encode(guest_header(op::rw, 5000, 1234, 1));
    std::vector<std::uint8_t> packet(hdr.begin(), hdr.end());
    packet.push_back(0x5a);
    const std::uint16_t head = tx->offer({packet}, {});
    const std::uint16_t used_before = static_cast<std::uint16_t>(
        mem.read_obj<std::uint16_t>(memory::guest_addr(tx->layout().device + 2)).value());
    republishing_guest guest(mem, *tx, head);
    const auto t0 = std::chrono::steady_clock::now();
    const bool more = dev.process();
    const auto took = std::chrono::steady_clock::now() - t0;
    const auto chains = static_cast<std::uint16_t>(guest.used_index() - used_before);
    guest.finish();
    BOOST_TEST(more);
    BOOST_TEST(reschedules == 1);
    BOOST_TEST(chains == 64u);  // one queue's worth (the rig's queues hold 64), then yield
    BOOST_TEST(mux.find(ep)->readable() == 64u);
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(took).count() < 1000);
    BOOST_TEST(dev.active());
}

// The same on the receive side: a guest that keeps one receive buffer republished while the
// host has 64 KiB to send gets one queue's worth of packets per activation.
BOOST_AUTO_TEST_CASE(a_guest_republishing_rx_buffers_gets_one_queue_per_activation) {
    auto ep = connected(*this);
    (void)received();
    int reschedules = 0;
    dev.on_more_work([&] { ++reschedules; });
    auto data = pattern(connection::tx_capacity);
    BOOST_REQUIRE(mux.find(ep)->write(data) == data.size());  // 140 packets of 468 bytes
    const std::uint16_t head = rx->offer({}, {512});
    const std::uint16_t used_before = static_cast<std::uint16_t>(
        mem.read_obj<std::uint16_t>(memory::guest_addr(rx->layout().device + 2)).value());
    republishing_guest guest(mem, *rx, head);
    const bool more = dev.process();
    const auto chains = static_cast<std::uint16_t>(guest.used_index() - used_before);
    guest.finish();
    BOOST_TEST(more);
    BOOST_TEST(reschedules == 1);
    BOOST_TEST(chains == 64u);
    BOOST_TEST(mux.find(ep)->has_output());
}

// A reset with no packet after it once left host operations on the dead connections waiting
// for a pump that never came: the device now asks its owner for a turn.
BOOST_AUTO_TEST_CASE(a_driver_reset_asks_the_owner_for_a_turn_so_waiting_operations_complete) {
    auto ep = connected(*this);
    int turns = 0;
    dev.on_more_work([&] { ++turns; });
    wr(0x70, 0);
    BOOST_TEST(turns == 1);
    BOOST_TEST((mux.find(ep)->error() == vsock_errc::connection_reset));
}

BOOST_AUTO_TEST_SUITE_END()
