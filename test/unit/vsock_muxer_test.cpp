#include "vsock/muxer.hpp"

#define BOOST_TEST_MODULE vsock_muxer
#include <boost/test/unit_test.hpp>

using namespace mimobox::vsock;

namespace {
constexpr std::uint64_t cid = 3;

header from_guest(op o, std::uint32_t guest_port, std::uint32_t host_port) {
    header h;
    h.src_cid = cid;
    h.dst_cid = host_cid;
    h.src_port = guest_port;
    h.dst_port = host_port;
    h.operation = o;
    h.buf_alloc = 65536;
    return h;
}
}  // namespace

BOOST_AUTO_TEST_CASE(packet_for_unknown_connection_gets_rst) {
    muxer m(cid);
    m.on_guest_packet(from_guest(op::rw, 5000, 77), {});
    auto p = m.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::rst));
    BOOST_TEST(p->hdr.dst_port == 5000u);
    BOOST_TEST(p->hdr.src_port == 77u);
}

BOOST_AUTO_TEST_CASE(rst_for_unknown_connection_is_not_answered) {
    muxer m(cid);
    m.on_guest_packet(from_guest(op::rst, 5000, 77), {});
    BOOST_TEST(!m.has_output());
}

BOOST_AUTO_TEST_CASE(request_without_listener_is_refused_with_rst) {
    muxer m(cid);
    m.on_guest_packet(from_guest(op::request, 5000, 9999), {});
    BOOST_TEST((m.poll_output(4096)->hdr.operation == op::rst));
    BOOST_TEST(m.size() == 0u);
}

BOOST_AUTO_TEST_CASE(request_to_listener_is_accepted_and_reported) {
    muxer m(cid);
    m.listen(9999);
    m.on_guest_packet(from_guest(op::request, 5000, 9999), {});
    auto p = m.poll_output(4096);
    BOOST_TEST((p->hdr.operation == op::response));
    auto ep = m.take_accepted(9999);
    BOOST_REQUIRE(ep);
    BOOST_TEST(ep->guest_port == 5000u);
    BOOST_TEST(!m.take_accepted(9999));
    BOOST_TEST(m.find(*ep) != nullptr);
}

BOOST_AUTO_TEST_CASE(host_connect_allocates_distinct_ephemeral_ports) {
    muxer m(cid);
    auto a = m.connect(52);
    auto b = m.connect(52);
    BOOST_REQUIRE(a && b);
    BOOST_TEST(a->host_port != b->host_port);
    BOOST_TEST(a->host_port >= muxer::ephemeral_first);
    BOOST_TEST((m.poll_output(4096)->hdr.operation == op::request));
    BOOST_TEST((m.poll_output(4096)->hdr.operation == op::request));
}

BOOST_AUTO_TEST_CASE(spoofed_source_cid_is_rejected) {
    muxer m(cid);
    m.listen(9999);
    auto h = from_guest(op::request, 5000, 9999);
    h.src_cid = 7;  // another VM's CID
    m.on_guest_packet(h, {});
    BOOST_TEST(m.size() == 0u);
}

BOOST_AUTO_TEST_CASE(junk_flood_queues_a_bounded_number_of_rsts) {
    muxer m(cid);
    for (std::uint32_t i = 0; i < 100000; ++i) m.on_guest_packet(from_guest(op::rw, i, 1), {});
    std::size_t n = 0;
    while (m.poll_output(4096)) ++n;
    BOOST_TEST(n <= 256u);
    BOOST_TEST(n > 0u);
}

BOOST_AUTO_TEST_CASE(output_is_shared_round_robin_between_connections) {
    muxer m(cid);
    auto a = m.connect(1).value();
    auto b = m.connect(2).value();
    (void)m.poll_output(4096);
    (void)m.poll_output(4096);
    m.on_guest_packet(from_guest(op::response, 1, a.host_port), {});
    m.on_guest_packet(from_guest(op::response, 2, b.host_port), {});
    std::vector<std::uint8_t> data(10000, 1);
    m.find(a)->write(data);
    m.find(b)->write(data);
    auto p1 = m.poll_output(1000), p2 = m.poll_output(1000);
    BOOST_TEST(p1->hdr.dst_port != p2->hdr.dst_port);
}

BOOST_AUTO_TEST_CASE(closed_connections_are_collected_and_fail_all_aborts) {
    muxer m(cid);
    auto a = m.connect(1).value();
    (void)m.poll_output(4096);
    m.on_guest_packet(from_guest(op::rst, 1, a.host_port), {});
    BOOST_TEST(m.collect_closed() == 1u);
    auto b = m.connect(2).value();
    m.fail_all(vsock_errc::connection_reset);
    BOOST_TEST((m.find(b)->error() == vsock_errc::connection_reset));
    BOOST_TEST(!m.has_output());
}
