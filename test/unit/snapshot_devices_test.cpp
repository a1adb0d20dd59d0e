// Device state through a snapshot without KVM: the virtio-vsock device behind virtio-mmio (with
// the driver-side queue mock), the UART and the i8042 save, restore into fresh instances and
// save the same bytes again; a restored device goes on from its queues' positions; hostile
// states are refused.
#include "snapshot/state_codec.hpp"

#define BOOST_TEST_MODULE snapshot_devices
#include <boost/test/unit_test.hpp>

#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "mimobox/vm/error.hpp"
#include "../support/vsock_rig.hpp"

using namespace mimobox;
using mimobox::test::vsock_rig;

namespace {

std::vector<std::uint8_t> saved(const virtio::mmio_transport& t) {
    snapshot::state_writer out;
    t.save(out);
    return out.take();
}

// A second device and transport on the rig's memory, as a restored VM has.
struct restored_side {
    vsock::muxer mux{vsock_rig::cid};
    vsock::vsock_device dev;
    test::counting_irq irq;
    virtio::mmio_transport transport;
    explicit restored_side(const memory::guest_memory& mem) : dev(mem, mux), transport(dev, mem, irq) { dev.attach(transport); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(an_active_vsock_device_restores_where_its_queues_stood) {
    vsock_rig rig;
    rig.post_rx_buffers(4);
    // A connection request to a port nobody listens on: the device answers with a reset, so
    // the TX and RX queues both move.
    rig.guest_send(rig.guest_header(vsock::op::request, 1000, 77));
    BOOST_REQUIRE_EQUAL(rig.received().size(), 1u);
    const auto positions = rig.dev.queue_positions();
    BOOST_REQUIRE_EQUAL(positions.size(), 3u);
    BOOST_REQUIRE(positions[1].first == 1u && positions[0].second == 1u);

    const auto bytes = saved(*rig.transport);
    restored_side side(rig.mem);
    snapshot::state_reader in(bytes);
    BOOST_TEST(!side.transport.restore(in));
    BOOST_TEST(in.at_end());
    BOOST_TEST(side.dev.active());
    BOOST_TEST((side.dev.queue_positions() == positions));
    BOOST_TEST((saved(side.transport) == bytes));

    // The guest's next request is taken from where the first left off, and answered into the
    // next RX buffer.
    rig.tx->offer({[&] {
        auto h = vsock::encode(rig.guest_header(vsock::op::request, 1001, 78));
        return std::vector<std::uint8_t>(h.begin(), h.end());
    }()}, {});
    side.dev.process();
    BOOST_TEST(side.dev.queue_positions()[1].first == 2u);
    BOOST_TEST(side.dev.queue_positions()[0].second == 2u);
}

BOOST_AUTO_TEST_CASE(transport_reset_event_goes_to_the_event_queue_and_interrupts) {
    vsock_rig rig;
    const int before = rig.irq.count;
    BOOST_TEST(!rig.dev.send_transport_reset());  // no event buffer posted: nothing to tell
    rig.ev->offer({}, {4});
    BOOST_TEST(rig.dev.send_transport_reset());
    auto used = rig.ev->take_used();
    BOOST_REQUIRE(used.has_value());
    BOOST_TEST(used->second == 4u);
    auto desc = rig.ev->read(rig.ev->layout().desc + 16u * used->first, 16);
    std::uint64_t addr = 0;
    std::memcpy(&addr, desc.data(), 8);
    const auto event = rig.ev->read(addr, 4);
    BOOST_TEST((event == std::vector<std::uint8_t>{0, 0, 0, 0}));  // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
    BOOST_TEST(rig.irq.count > before);
}

BOOST_AUTO_TEST_CASE(packets_for_the_guest_wait_until_it_has_handled_the_reset) {
    vsock_rig rig;
    rig.post_rx_buffers(4);
    rig.ev->offer({}, {4});
    BOOST_REQUIRE(rig.dev.send_transport_reset());
    BOOST_TEST(rig.dev.waiting_for_reset_ack());
    // The guest asks for a port nobody listens on; the answer (a reset) must wait.
    rig.guest_send(rig.guest_header(vsock::op::request, 1000, 77));
    BOOST_TEST(rig.received().empty());
    // Linux reposts its event buffer once it has handled the event: then the answer goes.
    rig.ev->offer({}, {4});
    rig.wr(0x50, 2);
    BOOST_TEST(!rig.dev.waiting_for_reset_ack());
    BOOST_TEST(rig.received().size() == 1u);
}

BOOST_AUTO_TEST_CASE(hostile_device_states_are_refused_and_leave_the_device_inactive) {
    vsock_rig rig;
    const auto bytes = saved(*rig.transport);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        restored_side side(rig.mem);
        snapshot::state_reader in{std::span(bytes).first(cut)};
        BOOST_TEST((side.transport.restore(in) == vm::snapshot_errc::corrupt_state));
        BOOST_TEST(!side.dev.active());
    }
    // Layout after the three transport words: status, features, queue_sel, generation, active,
    // queue count, then per queue: size (u16) ...
    constexpr std::size_t status_at = 12, active_at = 12 + 4 + 8 + 4 + 4, first_queue_size_at = active_at + 1 + 4;
    {
        auto no_driver_ok = bytes;
        no_driver_ok[status_at] &= static_cast<std::uint8_t>(~virtio::status::driver_ok);
        restored_side side(rig.mem);
        snapshot::state_reader in(no_driver_ok);
        BOOST_TEST((side.transport.restore(in) == vm::snapshot_errc::corrupt_state));
        BOOST_TEST(!side.dev.active());
    }
    {
        auto oversized = bytes;
        oversized[first_queue_size_at] = 0x00;
        oversized[first_queue_size_at + 1] = 0x04;  // 1024 > the device's 256
        restored_side side(rig.mem);
        snapshot::state_reader in(oversized);
        BOOST_TEST((side.transport.restore(in) == vm::snapshot_errc::corrupt_state));
        BOOST_TEST(!side.dev.active());
    }
    {
        auto not_a_bool = bytes;
        not_a_bool[active_at] = 7;
        restored_side side(rig.mem);
        snapshot::state_reader in(not_a_bool);
        BOOST_TEST((side.transport.restore(in) == vm::snapshot_errc::corrupt_state));
    }
}

BOOST_AUTO_TEST_CASE(uart_and_i8042_registers_and_queued_input_survive) {
    test::counting_irq irq_a, irq_b;
    std::string out_a;
    devices::serial a(irq_a, [&](std::uint8_t c) { out_a.push_back(static_cast<char>(c)); });
    const std::uint8_t lcr = 0x1b, ier = 0x01;
    a.write(3, std::span(&lcr, 1));
    a.write(1, std::span(&ier, 1));
    const std::string input = "queued";
    a.enqueue_input(std::span(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
    snapshot::state_writer out;
    a.save(out);
    devices::serial b(irq_b, [](std::uint8_t) {});
    snapshot::state_reader in(out.data());
    BOOST_TEST(!b.restore(in));
    BOOST_TEST(in.at_end());
    snapshot::state_writer again;
    b.save(again);
    BOOST_TEST(again.data() == out.data());
    BOOST_TEST(irq_b.count > 0);  // received data with its interrupt enabled: raised on restore
    std::string read_back;
    for (std::size_t i = 0; i < input.size(); ++i) {
        std::uint8_t c = 0;
        b.read(0, std::span(&c, 1));
        read_back.push_back(static_cast<char>(c));
    }
    BOOST_TEST(read_back == input);

    // More queued input than a UART holds is not a UART's state.
    snapshot::state_writer hostile;
    for (int i = 0; i < 6; ++i) hostile.u8(0);
    hostile.boolean(false);
    hostile.u64(0);
    hostile.bytes(std::vector<std::uint8_t>(devices::serial::input_capacity + 1));
    devices::serial c(irq_b, [](std::uint8_t) {});
    snapshot::state_reader hin(hostile.data());
    BOOST_TEST((c.restore(hin) == vm::snapshot_errc::corrupt_state));

    devices::i8042 kbd([] {}), kbd2([] {});
    const std::uint8_t read_command_byte = 0x20;
    kbd.write(4, std::span(&read_command_byte, 1));  // leaves the command byte in the output buffer
    snapshot::state_writer k;
    kbd.save(k);
    snapshot::state_reader kin(k.data());
    BOOST_TEST(!kbd2.restore(kin));
    std::uint8_t status = 0, data = 0;
    kbd2.read(4, std::span(&status, 1));
    kbd2.read(0, std::span(&data, 1));
    BOOST_TEST((status & 1) == 1);
    BOOST_TEST(data == 0x45);
}
