#include "agent/response_reader.hpp"

#define BOOST_TEST_MODULE response_reader
#include <boost/test/unit_test.hpp>

using namespace mimobox::agent;

namespace {

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<std::uint8_t> message_frame(const response& r) {
    std::vector<std::uint8_t> out;
    const auto text = serialize(to_json(r));
    encode_frame(out, frame_kind::message, bytes_of(text));
    return out;
}

// Everything the reader yields for `wire` fed `chunk` bytes at a time.
std::vector<inbound> read_all(const std::vector<std::uint8_t>& wire, std::size_t chunk, boost::system::error_code& error) {
    response_reader r;
    std::vector<inbound> items;
    for (std::size_t pos = 0; pos < wire.size(); pos += chunk) {
        r.feed(std::span(wire).subspan(pos, std::min(chunk, wire.size() - pos)));
        for (;;) {
            auto item = r.next();
            if (!item) {
                error = item.error();
                return items;
            }
            if (!*item) break;
            items.push_back(std::move(**item));
        }
    }
    error = r.finish();
    return items;
}

}  // namespace

BOOST_AUTO_TEST_CASE(output_chunks_end_marks_and_exit_arrive_in_order_whatever_the_split) {
    std::vector<std::uint8_t> wire;
    encode_data(wire, frame_kind::stdout_data, bytes_of("hello "));
    encode_data(wire, frame_kind::stderr_data, bytes_of("oops"));
    encode_data(wire, frame_kind::stdout_data, bytes_of("world"));
    encode_end(wire, frame_kind::stdout_data);
    auto exit = message_frame(exit_response{3, 0, false, false, false, 10});
    wire.insert(wire.end(), exit.begin(), exit.end());
    for (std::size_t chunk : {std::size_t(1), std::size_t(3), std::size_t(7), wire.size()}) {
        boost::system::error_code ec;
        auto items = read_all(wire, chunk, ec);
        BOOST_TEST(!ec);
        BOOST_REQUIRE(items.size() == 5u);
        BOOST_TEST((std::get<data_chunk>(items[0]).bytes == bytes_of("hello ")));
        BOOST_TEST((std::get<data_chunk>(items[1]).kind == frame_kind::stderr_data));
        BOOST_TEST((std::get<data_end>(items[3]).kind == frame_kind::stdout_data));
        BOOST_TEST(std::get<exit_response>(std::get<response>(items[4])).exit_code == 3);
    }
}

BOOST_AUTO_TEST_CASE(large_data_is_split_into_frames_of_at_most_the_chunk_limit) {
    std::vector<std::uint8_t> data(max_data_chunk * 2 + 17, 0xab);
    std::vector<std::uint8_t> wire;
    encode_data(wire, frame_kind::file_data, data);
    boost::system::error_code ec;
    auto items = read_all(wire, 4096, ec);
    BOOST_TEST(!ec);
    BOOST_REQUIRE(items.size() == 3u);
    std::size_t total = 0;
    for (auto& i : items) {
        const auto& c = std::get<data_chunk>(i);
        BOOST_TEST(c.bytes.size() <= max_data_chunk);
        total += c.bytes.size();
    }
    BOOST_TEST(total == data.size());
}

BOOST_AUTO_TEST_CASE(stdin_data_from_the_guest_is_an_unexpected_frame) {
    std::vector<std::uint8_t> wire;
    encode_data(wire, frame_kind::stdout_data, bytes_of("ok"));
    encode_data(wire, frame_kind::stdin_data, bytes_of("not from a guest"));
    boost::system::error_code ec;
    auto items = read_all(wire, wire.size(), ec);
    BOOST_TEST(items.size() == 1u);  // what came before the violation is still delivered
    BOOST_TEST((ec == agent_errc::unexpected_frame));
}

BOOST_AUTO_TEST_CASE(malformed_json_and_bad_end_marks_are_protocol_errors) {
    std::vector<std::uint8_t> bad_json;
    encode_frame(bad_json, frame_kind::message, bytes_of("{\"v\":1,\"type\":"));
    boost::system::error_code ec;
    read_all(bad_json, 5, ec);
    BOOST_TEST((ec == agent_errc::malformed_message));

    std::vector<std::uint8_t> bad_end;
    encode_frame(bad_end, frame_kind::end_of_data, bytes_of("xy"));
    read_all(bad_end, 64, ec);
    BOOST_TEST((ec == agent_errc::malformed_message));
}

BOOST_AUTO_TEST_CASE(a_stream_ending_inside_a_frame_is_truncated) {
    std::vector<std::uint8_t> wire;
    encode_data(wire, frame_kind::stdout_data, bytes_of("cut short"));
    wire.resize(wire.size() - 3);
    boost::system::error_code ec;
    auto items = read_all(wire, 2, ec);
    BOOST_TEST(items.empty());
    BOOST_TEST((ec == agent_errc::truncated_frame));
}

BOOST_AUTO_TEST_CASE(an_oversized_length_is_refused_before_buffering) {
    std::vector<std::uint8_t> wire = {0xff, 0xff, 0xff, 0x7f, 3};
    boost::system::error_code ec;
    read_all(wire, wire.size(), ec);
    BOOST_TEST((ec == agent_errc::frame_too_large));
}
