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

namespace {
// An established host-initiated connection, its REQUEST already sent.
endpoint established(muxer& m, std::uint32_t guest_port) {
    auto ep = m.connect(guest_port).value();
    while (m.poll_output(4096)) {
    }
    m.on_guest_packet(from_guest(op::response, guest_port, ep.host_port), {});
    return ep;
}
}  // namespace

// A guest that never answers our close with RST once kept the connection (and up to its
// receive buffer) forever; a thousand of them and every new connect was refused.
BOOST_AUTO_TEST_CASE(a_close_the_guest_never_answers_is_reset_after_the_timeout) {
    muxer m(cid);
    const auto t0 = muxer::clock::time_point{} + std::chrono::hours(1);
    auto ep = established(m, 52);
    m.close(ep, t0);
    BOOST_TEST((m.find(ep)->current_state() == connection::state::closing));
    while (m.poll_output(4096)) {
    }  // our SHUTDOWN
    BOOST_TEST((m.next_close_deadline() == t0 + muxer::close_timeout));
    BOOST_TEST(m.expire_closing(t0 + muxer::close_timeout - std::chrono::milliseconds(1)) == 0u);
    BOOST_TEST(m.expire_closing(t0 + muxer::close_timeout) == 1u);
    BOOST_TEST(m.close_timeouts() == 1u);
    auto rst = m.poll_output(4096);
    BOOST_REQUIRE(rst);
    BOOST_TEST((rst->hdr.operation == op::rst));
    BOOST_TEST(m.collect_closed() == 1u);
    BOOST_TEST(m.size() == 0u);
    BOOST_TEST(!m.next_close_deadline());
}

BOOST_AUTO_TEST_CASE(a_close_the_guest_answers_in_time_does_not_time_out) {
    muxer m(cid);
    const auto t0 = muxer::clock::time_point{} + std::chrono::hours(1);
    auto ep = established(m, 52);
    m.close(ep, t0);
    m.on_guest_packet(from_guest(op::rst, 52, ep.host_port), {});
    BOOST_TEST(m.expire_closing(t0 + 10 * muxer::close_timeout) == 0u);
    BOOST_TEST(m.close_timeouts() == 0u);
    BOOST_TEST(!m.next_close_deadline());
}

BOOST_AUTO_TEST_CASE(data_the_guest_sends_after_our_close_is_not_kept) {
    muxer m(cid);
    auto ep = established(m, 52);
    std::vector<std::uint8_t> data(4096, 7);
    auto rw = from_guest(op::rw, 52, ep.host_port);
    rw.len = static_cast<std::uint32_t>(data.size());
    m.on_guest_packet(rw, data);
    BOOST_TEST(m.find(ep)->readable() == data.size());
    m.close(ep, muxer::clock::now());
    BOOST_TEST(m.find(ep)->readable() == 0u);
    for (int i = 0; i < 10; ++i) m.on_guest_packet(rw, data);
    BOOST_TEST(m.find(ep)->readable() == 0u);
    BOOST_TEST((m.find(ep)->current_state() == connection::state::closing));
}

// REQUEST/RST cycles once left an endpoint per cycle in the accept queue, never pruned, and a
// stale one was later handed out as a stream.
BOOST_AUTO_TEST_CASE(requests_reset_before_they_are_taken_leave_the_backlog) {
    muxer m(cid);
    m.listen(9999);
    for (std::uint32_t port = 5000; port < 5000 + 10 * muxer::max_backlog; ++port) {
        m.on_guest_packet(from_guest(op::request, port, 9999), {});
        m.on_guest_packet(from_guest(op::rst, port, 9999), {});
    }
    while (m.poll_output(4096)) {
    }
    m.collect_closed();
    BOOST_TEST(!m.take_accepted(9999).has_value());
    BOOST_TEST(m.size() == 0u);
    m.on_guest_packet(from_guest(op::request, 7000, 9999), {});
    auto ep = m.take_accepted(9999);
    BOOST_REQUIRE(ep);
    BOOST_TEST(ep->guest_port == 7000u);
}

BOOST_AUTO_TEST_CASE(requests_beyond_the_backlog_are_refused_with_rst) {
    muxer m(cid);
    m.listen(9999);
    for (std::uint32_t port = 5000; port < 5000 + muxer::max_backlog; ++port)
        m.on_guest_packet(from_guest(op::request, port, 9999), {});
    while (m.poll_output(4096)) {
    }
    m.on_guest_packet(from_guest(op::request, 6000, 9999), {});
    auto p = m.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::rst));
    BOOST_TEST(p->hdr.dst_port == 6000u);
    BOOST_TEST(m.size() == muxer::max_backlog);
    BOOST_TEST(m.take_accepted(9999).has_value());  // taking one makes room for the next
    m.on_guest_packet(from_guest(op::request, 6001, 9999), {});
    BOOST_TEST((m.poll_output(4096)->hdr.operation == op::response));
}
