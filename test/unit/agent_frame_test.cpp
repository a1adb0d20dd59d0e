#include "agent/frame.hpp"

#define BOOST_TEST_MODULE agent_frame
#include <boost/test/unit_test.hpp>

#include <string>

using namespace mimobox::agent;

namespace {
std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<frame> decode_all(frame_decoder& d, std::span<const std::uint8_t> in, std::size_t chunk) {
    std::vector<frame> out;
    std::size_t pos = 0;
    while (pos < in.size() && !d.error()) {
        auto piece = in.subspan(pos, std::min(chunk, in.size() - pos));
        std::size_t used = 0;
        while (used < piece.size() && !d.error()) {
            used += d.feed(piece.subspan(used));
            while (auto f = d.next()) out.push_back(std::move(*f));
        }
        pos += piece.size();
    }
    return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(frames_round_trip_whatever_the_chunking) {
    std::vector<std::uint8_t> wire;
    encode_frame(wire, frame_kind::message, bytes_of(R"({"v":1,"op":"ping"})"));
    std::vector<std::uint8_t> binary(70000);
    for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<std::uint8_t>(i * 31);
    encode_frame(wire, frame_kind::stdout_data, binary);
    encode_frame(wire, frame_kind::end_of_data, std::vector<std::uint8_t>{3});
    for (std::size_t chunk : {std::size_t(1), std::size_t(3), std::size_t(4096), wire.size()}) {
        frame_decoder d;
        auto frames = decode_all(d, wire, chunk);
        BOOST_REQUIRE_EQUAL(frames.size(), 3u);
        BOOST_TEST((frames[0].kind == frame_kind::message));
        BOOST_TEST(std::string(frames[0].body.begin(), frames[0].body.end()) == R"({"v":1,"op":"ping"})");
        BOOST_TEST((frames[1].body == binary));
        BOOST_TEST(frames[2].body.size() == 1u);
        BOOST_TEST(!d.finish());
    }
}

BOOST_AUTO_TEST_CASE(oversized_length_is_rejected_before_buffering) {
    frame_decoder d;
    std::vector<std::uint8_t> wire = {0xff, 0xff, 0xff, 0x7f, 1};
    d.feed(wire);
    BOOST_TEST((d.error() == agent_errc::frame_too_large));
    BOOST_TEST(d.feed(wire) == 0u);  // errors are final
}

BOOST_AUTO_TEST_CASE(zero_length_frame_is_rejected) {
    frame_decoder d;
    std::vector<std::uint8_t> wire = {0, 0, 0, 0};
    d.feed(wire);
    BOOST_TEST((d.error() == agent_errc::frame_too_large));
}

BOOST_AUTO_TEST_CASE(unknown_kind_is_rejected) {
    std::vector<std::uint8_t> wire;
    encode_frame(wire, static_cast<frame_kind>(99), bytes_of("x"));
    frame_decoder d;
    d.feed(wire);
    BOOST_TEST((d.error() == agent_errc::unknown_frame_kind));
}

BOOST_AUTO_TEST_CASE(stream_ending_inside_a_frame_is_truncated) {
    std::vector<std::uint8_t> wire;
    encode_frame(wire, frame_kind::stderr_data, bytes_of("partial"));
    wire.resize(wire.size() - 2);
    frame_decoder d;
    d.feed(wire);
    BOOST_TEST(!d.next().has_value());
    BOOST_TEST((d.finish() == agent_errc::truncated_frame));
}

BOOST_AUTO_TEST_CASE(decoder_takes_only_one_frame_per_feed_until_next) {
    std::vector<std::uint8_t> wire;
    encode_frame(wire, frame_kind::stdin_data, bytes_of("ab"));
    encode_frame(wire, frame_kind::stdin_data, bytes_of("cd"));
    frame_decoder d;
    auto used = d.feed(wire);
    BOOST_TEST(used == 7u);
    BOOST_TEST(d.feed(std::span(wire).subspan(used)) == 0u);  // the first frame is still waiting
    BOOST_TEST(d.next().has_value());
    BOOST_TEST(d.feed(std::span(wire).subspan(used)) == 7u);
}
