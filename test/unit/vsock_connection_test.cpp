#include "vsock/connection.hpp"

#define BOOST_TEST_MODULE vsock_connection
#include <boost/test/unit_test.hpp>

#include <numeric>

using namespace mimobox::vsock;

namespace {

constexpr endpoint ends{3, 1024, 5000};

header guest(op o, std::uint32_t buf_alloc = 64 * 1024, std::uint32_t fwd_cnt = 0) {
    header h;
    h.src_cid = 3;
    h.dst_cid = host_cid;
    h.src_port = ends.guest_port;
    h.dst_port = ends.host_port;
    h.operation = o;
    h.buf_alloc = buf_alloc;
    h.fwd_cnt = fwd_cnt;
    return h;
}

std::vector<std::uint8_t> bytes(std::size_t n, std::uint8_t start = 0) {
    std::vector<std::uint8_t> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
}

connection established(std::uint32_t guest_buf = 64 * 1024, std::uint32_t our_buf = connection::default_buf_alloc) {
    auto c = connection::connect(ends, our_buf);
    BOOST_REQUIRE(c.poll_output(4096)->hdr.operation == op::request);
    c.on_guest_packet(guest(op::response, guest_buf), {});
    BOOST_REQUIRE(c.current_state() == connection::state::established);
    return c;
}

void send_rw(connection& c, const std::vector<std::uint8_t>& data, std::uint32_t fwd = 0) {
    auto h = guest(op::rw, 64 * 1024, fwd);
    h.len = static_cast<std::uint32_t>(data.size());
    c.on_guest_packet(h, data);
}

}  // namespace

BOOST_AUTO_TEST_CASE(header_codec_round_trips_at_spec_offsets) {
    header h{3, 2, 0x11223344, 0x55667788, 99, type_stream, op::credit_update, 3, 0xaabbccdd, 0x01020304};
    auto b = encode(h);
    BOOST_TEST(b.size() == 44u);
    BOOST_TEST(b[16] == 0x44);  // src_port, little-endian
    BOOST_TEST(b[30] == 6);     // op
    BOOST_TEST(b[40] == 0x04);  // fwd_cnt
    BOOST_TEST((decode(b) == h));
}

BOOST_AUTO_TEST_CASE(host_connect_sends_request_and_response_establishes) {
    auto c = connection::connect(ends);
    BOOST_TEST((c.current_state() == connection::state::connecting));
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::request));
    BOOST_TEST(p->hdr.src_port == ends.host_port);
    BOOST_TEST(p->hdr.dst_port == ends.guest_port);
    BOOST_TEST(p->hdr.buf_alloc == connection::default_buf_alloc);
    c.on_guest_packet(guest(op::response), {});
    BOOST_TEST((c.current_state() == connection::state::established));
    BOOST_TEST(!c.error());
}

BOOST_AUTO_TEST_CASE(rst_answering_request_is_connection_refused) {
    auto c = connection::connect(ends);
    (void)c.poll_output(4096);
    c.on_guest_packet(guest(op::rst), {});
    BOOST_TEST((c.error() == vsock_errc::connection_refused));
    BOOST_TEST(!c.has_output());  // never answer an RST
}

BOOST_AUTO_TEST_CASE(guest_initiated_request_is_answered_with_response) {
    auto c = connection::accept(ends, guest(op::request, 8192));
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::response));
    BOOST_TEST(c.peer_credit() == 8192u);
}

BOOST_AUTO_TEST_CASE(guest_data_is_buffered_and_read_in_order) {
    auto c = established();
    send_rw(c, bytes(100));
    BOOST_TEST(c.readable() == 100u);
    std::vector<std::uint8_t> out(60);
    BOOST_TEST(c.read(out) == 60u);
    BOOST_TEST(out[59] == 59);
    BOOST_TEST(c.readable() == 40u);
}

BOOST_AUTO_TEST_CASE(guest_sending_beyond_advertised_buffer_gets_reset) {
    auto c = established(64 * 1024, 4096);
    send_rw(c, bytes(4000));
    send_rw(c, bytes(200));  // 4200 > 4096 with nothing read
    BOOST_TEST((c.error() == vsock_errc::protocol_violation));
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::rst));
}

BOOST_AUTO_TEST_CASE(rw_length_not_matching_payload_is_a_violation) {
    auto c = established();
    auto h = guest(op::rw);
    h.len = 10;
    auto data = bytes(5);
    c.on_guest_packet(h, data);
    BOOST_TEST((c.error() == vsock_errc::protocol_violation));
}

BOOST_AUTO_TEST_CASE(host_writes_go_out_within_guest_credit_then_credit_request) {
    auto c = established(1000);
    auto data = bytes(3000);
    BOOST_TEST(c.write(data) == 3000u);
    auto p1 = c.poll_output(600);
    BOOST_REQUIRE(p1);
    BOOST_TEST((p1->hdr.operation == op::rw));
    BOOST_TEST(p1->payload.size() == 600u);
    auto p2 = c.poll_output(600);
    BOOST_TEST(p2->payload.size() == 400u);  // credit exhausted at 1000
    BOOST_TEST(c.peer_credit() == 0u);
    auto p3 = c.poll_output(600);
    BOOST_REQUIRE(p3);
    BOOST_TEST((p3->hdr.operation == op::credit_request));
    BOOST_TEST(!c.poll_output(600));  // asked once; now wait
    c.on_guest_packet(guest(op::credit_update, 1000, 1000), {});  // guest consumed everything
    BOOST_TEST(c.peer_credit() == 1000u);
    auto p4 = c.poll_output(4096);
    BOOST_TEST(p4->payload.size() == 1000u);
    BOOST_TEST(p4->payload[0] == static_cast<std::uint8_t>(1000 % 256));
}

BOOST_AUTO_TEST_CASE(host_write_buffer_is_bounded) {
    auto c = established(0);
    auto data = bytes(connection::tx_capacity + 10);
    BOOST_TEST(c.write(data) == connection::tx_capacity);
    BOOST_TEST(c.writable() == 0u);
}

BOOST_AUTO_TEST_CASE(reading_frees_space_and_sends_credit_update) {
    auto c = established(64 * 1024, 4096);
    send_rw(c, bytes(3500));
    std::vector<std::uint8_t> out(3500);
    BOOST_TEST(c.read(out) == 3500u);
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::credit_update));
    BOOST_TEST(p->hdr.fwd_cnt == 3500u);
}

BOOST_AUTO_TEST_CASE(guest_credit_request_is_answered) {
    auto c = established();
    c.on_guest_packet(guest(op::credit_request), {});
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->hdr.operation == op::credit_update));
}

BOOST_AUTO_TEST_CASE(shutdown_write_follows_queued_data) {
    auto c = established();
    (void)c.write(bytes(10));
    c.shutdown_write();
    BOOST_TEST(c.writable() == 0u);
    BOOST_TEST((c.poll_output(4096)->hdr.operation == op::rw));
    auto p = c.poll_output(4096);
    BOOST_TEST((p->hdr.operation == op::shutdown));
    BOOST_TEST(p->hdr.flags == shutdown_send);
}

BOOST_AUTO_TEST_CASE(guest_shutdown_send_means_eof_after_buffered_data) {
    auto c = established();
    send_rw(c, bytes(5));
    auto h = guest(op::shutdown);
    h.flags = shutdown_send;
    c.on_guest_packet(h, {});
    BOOST_TEST(c.peer_done_sending());
    BOOST_TEST(c.readable() == 5u);
    send_rw(c, bytes(1));  // data after SHUTDOWN(send)
    BOOST_TEST((c.error() == vsock_errc::protocol_violation));
}

BOOST_AUTO_TEST_CASE(guest_full_shutdown_is_acknowledged_with_rst_without_error) {
    auto c = established();
    auto h = guest(op::shutdown);
    h.flags = shutdown_send | shutdown_receive;
    c.on_guest_packet(h, {});
    BOOST_TEST((c.current_state() == connection::state::closed));
    BOOST_TEST(!c.error());
    BOOST_TEST((c.poll_output(4096)->hdr.operation == op::rst));
}

BOOST_AUTO_TEST_CASE(host_close_sends_shutdown_both_and_guest_rst_ends_cleanly) {
    auto c = established();
    c.close();
    auto p = c.poll_output(4096);
    BOOST_TEST((p->hdr.operation == op::shutdown));
    BOOST_TEST(p->hdr.flags == (shutdown_send | shutdown_receive));
    c.on_guest_packet(guest(op::rst), {});
    BOOST_TEST((c.current_state() == connection::state::closed));
    BOOST_TEST(!c.error());
}

BOOST_AUTO_TEST_CASE(host_close_after_guest_full_shutdown_sends_rst_at_once) {
    // The agent's usual end: its answer and its SHUTDOWN arrive together, the host reads the
    // answer, then closes. A SHUTDOWN from us would only draw the guest's RST.
    auto c = established();
    send_rw(c, bytes(3));
    auto h = guest(op::shutdown);
    h.flags = shutdown_send | shutdown_receive;
    c.on_guest_packet(h, {});
    BOOST_TEST((c.current_state() == connection::state::established));  // data still unread
    std::uint8_t out[3];
    BOOST_TEST(c.read(out) == 3u);
    c.close();
    BOOST_TEST((c.current_state() == connection::state::closed));
    BOOST_TEST(!c.error());
    auto p = c.poll_output(4096);
    BOOST_REQUIRE(p.has_value());
    BOOST_TEST((p->hdr.operation == op::rst));
    BOOST_TEST(!c.poll_output(4096).has_value());
}

BOOST_AUTO_TEST_CASE(guest_shutdown_racing_our_close_leaves_only_the_rst_to_send) {
    // We closed, and the guest's own full SHUTDOWN arrived before ours went out: the RST is all
    // that is left. has_output must then turn false, or the device keeps taking receive
    // buffers for packets that never come.
    auto c = established();
    c.close();
    auto h = guest(op::shutdown);
    h.flags = shutdown_send | shutdown_receive;
    c.on_guest_packet(h, {});
    BOOST_TEST((c.current_state() == connection::state::closed));
    BOOST_TEST(c.has_output());
    BOOST_TEST((c.poll_output(4096)->hdr.operation == op::rst));
    BOOST_TEST(!c.has_output());
    BOOST_TEST(!c.poll_output(4096).has_value());
}

BOOST_AUTO_TEST_CASE(guest_reset_of_open_connection_is_reported) {
    auto c = established();
    c.on_guest_packet(guest(op::rst), {});
    BOOST_TEST((c.error() == vsock_errc::connection_reset));
}

BOOST_AUTO_TEST_CASE(unknown_op_or_type_resets_the_connection) {
    auto c = established();
    auto h = guest(op::rw);
    h.type = 2;  // SEQPACKET was not negotiated
    c.on_guest_packet(h, {});
    BOOST_TEST((c.error() == vsock_errc::protocol_violation));
    auto d = established();
    d.on_guest_packet(guest(static_cast<op>(42)), {});
    BOOST_TEST((d.error() == vsock_errc::protocol_violation));
    BOOST_TEST((d.poll_output(4096)->hdr.operation == op::rst));
}
