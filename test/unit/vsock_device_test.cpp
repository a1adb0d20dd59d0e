#include "vsock/vsock_device.hpp"

#define BOOST_TEST_MODULE vsock_device
#include <boost/test/unit_test.hpp>

#include "../support/mock_driver.hpp"

#include <cstring>
#include <numeric>

using namespace mimobox;
using namespace mimobox::vsock;
namespace st = virtio::status;

namespace {

constexpr std::uint64_t cid = 3;

struct counting_irq final : devices::interrupt_line {
    int count = 0;
    void trigger() override { ++count; }
};

// A guest driver for the vsock device: three queues set up through the MMIO registers.
struct fixture {
    memory::guest_memory mem;
    muxer mux{cid};
    vsock_device dev{mem, mux};
    counting_irq irq;
    std::optional<virtio::mmio_transport> transport;
    std::optional<test::mock_driver> rx, tx, ev;

    fixture() {
        BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(16u << 20).value()));
        transport.emplace(dev, mem, irq);
        dev.attach(*transport);
        rx.emplace(mem, 64, 0x10000, 0x100000);
        tx.emplace(mem, 64, 0x20000, 0x400000);
        ev.emplace(mem, 64, 0x30000, 0x800000);
        wr(0x70, st::acknowledge | st::driver);
        wr(0x24, 1);
        wr(0x20, 1);  // VERSION_1
        wr(0x70, st::acknowledge | st::driver | st::features_ok);
        setup(0, *rx);
        setup(1, *tx);
        setup(2, *ev);
        wr(0x70, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
        BOOST_REQUIRE(dev.active());
    }
    void wr(std::uint64_t off, std::uint32_t v) { transport->write(off, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4)); }
    std::uint32_t rd(std::uint64_t off) {
        std::uint32_t v = 0;
        transport->read(off, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
        return v;
    }
    void setup(std::uint32_t index, test::mock_driver& d) {
        wr(0x30, index);
        wr(0x38, 64);
        wr(0x80, static_cast<std::uint32_t>(d.layout().desc));
        wr(0x90, static_cast<std::uint32_t>(d.layout().driver));
        wr(0xa0, static_cast<std::uint32_t>(d.layout().device));
        wr(0x44, 1);
    }
    header guest_header(op o, std::uint32_t guest_port, std::uint32_t host_port, std::uint32_t len = 0) {
        header h;
        h.src_cid = cid;
        h.dst_cid = host_cid;
        h.src_port = guest_port;
        h.dst_port = host_port;
        h.operation = o;
        h.len = len;
        h.buf_alloc = 1u << 20;
        return h;
    }
    /// The guest sends a packet split at `split` bytes into two descriptors.
    void guest_send(const header& h, const std::vector<std::uint8_t>& payload = {}, std::size_t split = 44) {
        auto hdr = encode(h);
        std::vector<std::uint8_t> all(hdr.begin(), hdr.end());
        all.insert(all.end(), payload.begin(), payload.end());
        std::vector<std::vector<std::uint8_t>> parts;
        parts.emplace_back(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min(split, all.size())));
        if (all.size() > split) parts.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(split), all.end());
        tx->offer(parts, {});
        wr(0x50, 1);
    }
    void post_rx_buffers(int n, std::uint32_t size = 4096) {
        for (int i = 0; i < n; ++i) rx->offer({}, {size});
        wr(0x50, 0);
    }
    /// Packets the device placed in RX buffers, in order.
    std::vector<std::pair<header, std::vector<std::uint8_t>>> received(std::uint32_t buffer_size = 4096) {
        std::vector<std::pair<header, std::vector<std::uint8_t>>> out;
        // The mock hands buffers out sequentially from its arena; recover addresses from the
        // descriptor table instead of guessing.
        while (auto used = rx->take_used()) {
            auto head = used->first;
            auto desc = rx->read(rx->layout().desc + 16u * head, 16);
            std::uint64_t addr;
            std::memcpy(&addr, desc.data(), 8);
            auto bytes = rx->read(addr, std::min(used->second, buffer_size));
            if (bytes.size() < header_size) continue;
            auto h = decode(std::span<const std::uint8_t, header_size>(bytes.data(), header_size));
            out.emplace_back(h, std::vector<std::uint8_t>(bytes.begin() + header_size, bytes.end()));
        }
        return out;
    }
};

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

BOOST_AUTO_TEST_SUITE_END()
