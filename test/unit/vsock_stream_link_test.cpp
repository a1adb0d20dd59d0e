#include "vsock/stream_link.hpp"

#define BOOST_TEST_MODULE vsock_stream_link
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

using namespace mimobox::vsock;

namespace {

constexpr std::uint64_t guest = 3;
constexpr std::uint32_t agent_port = 52;

// The host's muxer and the guest bridge's mirrored one, joined by a byte stream that is cut
// into pieces of random size (1 byte included) each way, as a UART delivers it.
struct line_pair {
    muxer host{guest};
    muxer bridge{host_cid, guest};
    stream_link host_link{host, stream_link::role::responder};
    stream_link bridge_link{bridge, stream_link::role::initiator};
    std::mt19937 rng{7};

    static void move(stream_link& from, stream_link& to, std::mt19937& rng) {
        for (;;) {
            auto out = from.pending_output();
            if (out.empty()) return;
            const std::size_t n = std::min<std::size_t>(out.size(), std::uniform_int_distribution<std::size_t>(1, 700)(rng));
            std::vector<std::uint8_t> piece(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
            from.consume_output(n);
            to.feed(piece);
        }
    }
    void settle() {
        for (int i = 0; i < 64 && (host.has_output() || bridge.has_output() || !host_link.pending_output().empty() ||
                                   !bridge_link.pending_output().empty());
             ++i) {
            move(host_link, bridge_link, rng);
            move(bridge_link, host_link, rng);
        }
    }
};

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 31 + seed);
    return v;
}

std::vector<std::uint8_t> frame(const header& h, std::size_t payload_bytes, std::uint32_t magic = stream_link::frame_magic) {
    std::vector<std::uint8_t> f(sizeof magic);
    std::memcpy(f.data(), &magic, sizeof magic);
    const auto head = encode(h);
    f.insert(f.end(), head.begin(), head.end());
    f.resize(f.size() + payload_bytes, 0xab);
    return f;
}

// A bridge-side link that has seen the host's SYNC, ready for frames.
struct synced_bridge {
    muxer m{host_cid, guest};
    stream_link link{m, stream_link::role::initiator};
    synced_bridge() {
        link.consume_output(link.pending_output().size());
        link.feed(stream_link::sync_marker);
    }
};

header request_from_host(std::uint32_t host_port) {
    header h;
    h.src_cid = host_cid;
    h.dst_cid = guest;
    h.src_port = host_port;
    h.dst_port = agent_port;
    h.operation = op::request;
    h.buf_alloc = 4096;
    return h;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_host_connection_to_the_bridge_moves_data_both_ways_under_credit_and_closes_cleanly) {
    line_pair p;
    p.bridge.listen(agent_port);
    auto ep = p.host.connect(agent_port);
    BOOST_REQUIRE(ep);
    p.settle();
    auto accepted = p.bridge.take_accepted(agent_port);
    BOOST_REQUIRE(accepted);
    BOOST_TEST(accepted->guest_port == ep->host_port);  // mirrored: the bridge's peer port is the host's port
    auto* hc = p.host.find(*ep);
    auto* gc = p.bridge.find(*accepted);
    BOOST_REQUIRE(hc);
    BOOST_REQUIRE(gc);
    BOOST_TEST((hc->current_state() == connection::state::established));

    // More than either side's receive buffer (256 KiB), so credit has to flow back both ways.
    const auto down = pattern(600 * 1024, 1), up = pattern(700 * 1024, 2);
    std::vector<std::uint8_t> got_down, got_up;
    std::size_t sent_down = 0, sent_up = 0;
    std::vector<std::uint8_t> buf(37 * 1024);
    for (int round = 0; round < 10000 && (got_down.size() < down.size() || got_up.size() < up.size()); ++round) {
        sent_down += hc->write(std::span(down).subspan(sent_down));
        sent_up += gc->write(std::span(up).subspan(sent_up));
        p.settle();
        // Readers take a little at a time: the writers must stall on credit, never overrun.
        got_down.insert(got_down.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(gc->read(buf)));
        got_up.insert(got_up.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(hc->read(buf)));
        BOOST_REQUIRE(!hc->error());
        BOOST_REQUIRE(!gc->error());
    }
    BOOST_TEST((got_down == down));
    BOOST_TEST((got_up == up));

    hc->close();
    p.settle();
    BOOST_TEST(gc->peer_done_sending());
    gc->close();
    p.settle();
    BOOST_TEST((hc->current_state() == connection::state::closed));
    BOOST_TEST((gc->current_state() == connection::state::closed));
    BOOST_TEST(!hc->error());
    BOOST_TEST(p.host.collect_closed() == 1u);
    BOOST_TEST(p.bridge.collect_closed() == 1u);
    BOOST_TEST(!p.host_link.failed());
    BOOST_TEST(!p.bridge_link.failed());
}

BOOST_AUTO_TEST_CASE(a_connection_to_a_port_nobody_bridges_is_refused) {
    line_pair p;
    auto ep = p.host.connect(agent_port);  // the bridge listens on nothing
    p.settle();
    auto* hc = p.host.find(*ep);
    BOOST_REQUIRE(hc);
    BOOST_TEST((hc->error() == vsock_errc::connection_refused));
}

BOOST_AUTO_TEST_CASE(a_frame_with_a_wrong_magic_breaks_the_link_and_resets_every_connection) {
    line_pair p;
    p.bridge.listen(agent_port);
    auto ep = p.host.connect(agent_port);
    p.settle();
    auto junk = frame(request_from_host(7), 0, 0x12345678);
    junk.resize(stream_link::frame_overhead);  // not a SYNC either
    BOOST_TEST(p.host_link.feed(junk) == 0u);
    BOOST_TEST(p.host_link.failed());
    BOOST_TEST((p.host_link.error() == vsock_errc::link_broken));
    BOOST_TEST((p.host.find(*ep)->error() == vsock_errc::link_broken));
    // Nothing more is taken or sent once framing is lost.
    BOOST_TEST(p.host_link.feed(frame(request_from_host(8), 0)) == 0u);
    BOOST_TEST(p.host_link.pending_output().empty());
}

BOOST_AUTO_TEST_CASE(an_oversized_payload_length_breaks_the_link_before_anything_is_buffered) {
    synced_bridge b;
    auto& link = b.link;
    header h = request_from_host(9);
    h.operation = op::rw;
    h.len = stream_link::max_payload + 1;
    auto f = frame(h, 0);
    BOOST_TEST(link.feed(f) == 0u);
    BOOST_TEST((link.error() == vsock_errc::link_broken));
}

BOOST_AUTO_TEST_CASE(a_control_packet_that_claims_a_payload_breaks_the_link) {
    synced_bridge b;
    auto& link = b.link;
    header h = request_from_host(9);
    h.len = 16;
    BOOST_TEST(link.feed(frame(h, 16)) == 0u);
    BOOST_TEST((link.error() == vsock_errc::link_broken));
}

BOOST_AUTO_TEST_CASE(frames_split_at_every_byte_are_delivered_once_each) {
    synced_bridge b;
    auto& m = b.m;
    auto& link = b.link;
    m.listen(agent_port);
    std::vector<std::uint8_t> bytes;
    for (std::uint32_t port = 100; port < 103; ++port) {
        auto f = frame(request_from_host(port), 0);
        bytes.insert(bytes.end(), f.begin(), f.end());
    }
    std::size_t delivered = 0;
    for (auto b : bytes) delivered += link.feed(std::span(&b, 1));
    BOOST_TEST(delivered == 3u);
    BOOST_TEST(link.packets_in() == 3u);
    int accepted = 0;
    while (m.take_accepted(agent_port)) ++accepted;
    BOOST_TEST(accepted == 3);
}

BOOST_AUTO_TEST_CASE(output_waiting_for_a_slow_line_stays_bounded) {
    muxer host(guest);
    stream_link link(host, stream_link::role::responder);
    std::vector<endpoint> eps;
    for (int i = 0; i < 1000; ++i) eps.push_back(*host.connect(agent_port));  // 1000 REQUESTs queued
    link.feed(stream_link::sync_marker);
    const auto out = link.pending_output();
    BOOST_TEST(out.size() <= stream_link::output_high_water + stream_link::frame_overhead + stream_link::max_payload);
    BOOST_TEST(out.size() < 1000 * stream_link::frame_overhead);
    BOOST_TEST(host.has_output());  // the rest waits in the muxer, not in the link
    link.consume_output(out.size());
    BOOST_TEST(!link.pending_output().empty());
}

BOOST_AUTO_TEST_CASE(the_host_sends_nothing_before_the_sync_and_ignores_the_echo_before_it) {
    muxer host(guest);
    stream_link link(host, stream_link::role::responder);
    auto ep = host.connect(agent_port);
    BOOST_TEST(link.pending_output().empty());  // a tty not yet raw would echo it back
    // What a cooked tty echoes (^C^@...), a partial marker, then the SYNC.
    const std::string noise = "^C^@^@^@MVSK^@MVSMVSKSYNC";
    BOOST_TEST(link.feed(std::span(reinterpret_cast<const std::uint8_t*>(noise.data()), noise.size())) == 1u);
    BOOST_TEST(link.synced());
    BOOST_TEST(!link.failed());
    const auto out = link.pending_output();
    BOOST_REQUIRE(out.size() >= stream_link::sync_marker.size() + stream_link::frame_overhead);
    BOOST_TEST(std::equal(stream_link::sync_marker.begin(), stream_link::sync_marker.end(), out.begin()));  // the answer
    BOOST_TEST(!host.find(*ep)->error());
}

BOOST_AUTO_TEST_CASE(a_sync_mid_stream_means_the_bridge_restarted_and_resets_every_connection) {
    line_pair p;
    p.bridge.listen(agent_port);
    auto ep = p.host.connect(agent_port);
    p.settle();
    BOOST_REQUIRE((p.host.find(*ep)->current_state() == connection::state::established));
    BOOST_TEST(p.host_link.feed(stream_link::sync_marker) == 1u);
    BOOST_TEST(!p.host_link.failed());
    BOOST_TEST((p.host.find(*ep)->error() == vsock_errc::connection_reset));
    BOOST_TEST(p.host_link.syncs() == 2u);
    // The link itself is fine: a new connection works once a new bridge takes the answer.
    muxer bridge2(host_cid, guest);
    bridge2.listen(agent_port);
    stream_link bridge2_link(bridge2, stream_link::role::initiator);
    bridge2_link.consume_output(bridge2_link.pending_output().size());
    auto ep2 = p.host.connect(agent_port);
    for (int i = 0; i < 8; ++i) {
        line_pair::move(p.host_link, bridge2_link, p.rng);
        line_pair::move(bridge2_link, p.host_link, p.rng);
    }
    BOOST_TEST((p.host.find(*ep2)->current_state() == connection::state::established));
}
