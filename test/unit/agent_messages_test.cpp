#include "agent/messages.hpp"

#define BOOST_TEST_MODULE agent_messages
#include <boost/test/unit_test.hpp>

#include "agent/base64.hpp"
#include "agent/response_reader.hpp"

using namespace mimobox::agent;

namespace {
template <class T>
T round_trip_request(const T& in) {
    auto text = serialize(to_json(request{in}));
    auto parsed = parse_message(text);
    BOOST_REQUIRE(parsed);
    auto r = request_from_json(*parsed);
    BOOST_REQUIRE_MESSAGE(r, text);
    return std::get<T>(*r);
}
}  // namespace

BOOST_AUTO_TEST_CASE(exec_request_round_trips_arbitrary_bytes) {
    exec_request e;
    e.argv = {"printf", "%s\n", "line\nbreak", "quote\"s and 'single'", std::string("\xff\xfe raw", 6), "ünïcödé"};
    e.env = {{"A", "1"}, {"BYTES", std::string("\x80\x81", 2)}};
    e.cwd = "/tmp";
    e.timeout_ms = 2500;
    e.stdin_open = true;
    e.max_output = 1234;
    auto back = round_trip_request(e);
    BOOST_TEST(back.argv == e.argv);
    BOOST_TEST((back.env == e.env));
    BOOST_TEST(back.cwd == "/tmp");
    BOOST_TEST(back.timeout_ms == 2500u);
    BOOST_TEST(back.stdin_open);
    BOOST_TEST(back.max_output == 1234u);
    BOOST_TEST(!back.shell.has_value());
}

BOOST_AUTO_TEST_CASE(invalid_utf8_travels_as_base64) {
    exec_request e;
    e.argv = {std::string("\xc3\x28", 2)};  // invalid UTF-8 sequence
    auto text = serialize(to_json(request{e}));
    BOOST_TEST(text.find("base64") != std::string::npos);
    BOOST_TEST(round_trip_request(e).argv == e.argv);
}

BOOST_AUTO_TEST_CASE(shell_request_round_trips) {
    exec_request e;
    e.shell = "echo $HOME | tr a-z A-Z";
    BOOST_TEST(*round_trip_request(e).shell == *e.shell);
}

BOOST_AUTO_TEST_CASE(responses_round_trip) {
    exit_response x{-1, 9, true, false, true, 123456};
    auto r = response_from_json(*parse_message(serialize(to_json(response{x}))));
    BOOST_REQUIRE(r);
    auto& y = std::get<exit_response>(*r);
    BOOST_TEST(y.exit_code == -1);
    BOOST_TEST(y.signal == 9);
    BOOST_TEST(y.timed_out);
    BOOST_TEST(y.stderr_truncated);
    BOOST_TEST(y.duration_us == 123456u);
    auto e = response_from_json(*parse_message(serialize(to_json(response{error_response{2, "No such file"}}))));
    BOOST_TEST(std::get<error_response>(*e).error_number == 2);
}

BOOST_AUTO_TEST_CASE(wrong_version_is_version_mismatch) {
    auto v = parse_message(R"({"v":2,"op":"ping"})");
    BOOST_TEST((request_from_json(*v).error() == agent_errc::version_mismatch));
}

BOOST_AUTO_TEST_CASE(malformed_requests_are_rejected) {
    for (const char* text : {
             R"([1,2])",
             R"({"op":"ping"})",
             R"({"v":1,"op":"launch"})",
             R"({"v":1,"op":"exec"})",
             R"({"v":1,"op":"exec","argv":[]})",
             R"({"v":1,"op":"exec","argv":[42]})",
             R"({"v":1,"op":"exec","argv":["a\u0000b"]})",
             R"({"v":1,"op":"exec","argv":["ls"],"env":[["A=B","x"]]})",
             R"({"v":1,"op":"exec","argv":["ls"],"timeout_ms":-5})",
             R"({"v":1,"op":"exec","argv":[{"base64":"!!!"}]})",
         }) {
        auto v = parse_message(text);
        BOOST_REQUIRE(v);
        BOOST_TEST((request_from_json(*v).error() == agent_errc::malformed_message), text);
    }
}

BOOST_AUTO_TEST_CASE(deeply_nested_or_invalid_json_is_malformed) {
    BOOST_TEST((parse_message(std::string(100, '[')).error() == agent_errc::malformed_message));
    BOOST_TEST((parse_message("{not json").error() == agent_errc::malformed_message));
}

BOOST_AUTO_TEST_CASE(file_requests_round_trip_with_raw_path_bytes) {
    file_request f;
    f.op = file_request::operation::rename;
    f.path = std::string("/tmp/\xff name\n", 12);
    f.target = "/tmp/new name";
    f.mode = 0600;
    f.recursive = true;
    auto back = round_trip_request(f);
    BOOST_TEST((back.op == file_request::operation::rename));
    BOOST_TEST(back.path == f.path);
    BOOST_TEST(back.target == f.target);
    BOOST_TEST(back.mode == 0600u);
    BOOST_TEST(back.recursive);
}

BOOST_AUTO_TEST_CASE(file_requests_with_relative_or_nul_paths_are_malformed) {
    for (const char* text : {
             R"({"v":1,"op":"file","file_op":"read","path":"relative"})",
             R"({"v":1,"op":"file","file_op":"read","path":""})",
             R"({"v":1,"op":"file","file_op":"read","path":"/a\u0000b"})",
             R"({"v":1,"op":"file","file_op":"chmod","path":"/a"})",
             R"({"v":1,"op":"file","file_op":"rename","path":"/a"})",
             R"({"v":1,"op":"file","file_op":"write","path":"/a","mode":70000})",
         }) {
        auto v = parse_message(text);
        BOOST_REQUIRE(v);
        BOOST_TEST((request_from_json(*v).error() == agent_errc::malformed_message), text);
    }
}

BOOST_AUTO_TEST_CASE(init_request_carries_binary_entropy_within_limits) {
    init_request i{std::string("\x00\x01\xfe\xff", 4), "box"};
    auto back = round_trip_request(i);
    BOOST_TEST(back.entropy == i.entropy);
    BOOST_TEST(back.hostname == "box");
    init_request too_much{std::string(513, 'x'), ""};
    auto v = parse_message(serialize(to_json(request{too_much})));
    BOOST_TEST((request_from_json(*v).error() == agent_errc::malformed_message));
}

BOOST_AUTO_TEST_CASE(init_request_carries_the_wall_clock_and_the_reseed_flag) {
    init_request i;
    i.hostname = "box";
    i.wall_clock_ns = 1'796'000'000'123'456'789;
    i.force_reseed = true;
    auto back = round_trip_request(i);
    BOOST_TEST(back.wall_clock_ns == i.wall_clock_ns);
    BOOST_TEST(back.force_reseed);
    // Absent: an older host; neither is touched.
    auto plain = round_trip_request(init_request{});
    BOOST_TEST(plain.wall_clock_ns == 0);
    BOOST_TEST(!plain.force_reseed);
    // A clock before the epoch, or not a number, is malformed.
    for (const char* bad : {R"("wall_clock_ns":-5)", R"("wall_clock_ns":"now")", R"("reseed":1)"}) {
        auto text = serialize(to_json(request{init_request{}}));
        text.insert(text.size() - 1, std::string(",") + bad);
        auto v = parse_message(text);
        BOOST_REQUIRE(v.has_value());
        BOOST_TEST((request_from_json(*v).error() == agent_errc::malformed_message), bad);
    }
}

BOOST_AUTO_TEST_CASE(stat_listing_and_ok_responses_round_trip) {
    stat_response st{file_type::directory, 4096, 0755, -5};
    auto r1 = response_from_json(*parse_message(serialize(to_json(response{st}))));
    BOOST_REQUIRE(r1);
    auto& st2 = std::get<stat_response>(*r1);
    BOOST_TEST((st2.type == file_type::directory));
    BOOST_TEST(st2.size == 4096u);
    BOOST_TEST(st2.mode == 0755u);
    BOOST_TEST(st2.mtime_ns == -5);

    listing_response l;
    l.entries.push_back({"a", file_type::regular, 3});
    l.entries.push_back({std::string("\xff", 1), file_type::symlink, 0});
    l.truncated = true;
    auto r2 = response_from_json(*parse_message(serialize(to_json(response{l}))));
    BOOST_REQUIRE(r2);
    auto& l2 = std::get<listing_response>(*r2);
    BOOST_REQUIRE(l2.entries.size() == 2u);
    BOOST_TEST(l2.entries[1].name == std::string("\xff", 1));
    BOOST_TEST((l2.entries[1].type == file_type::symlink));
    BOOST_TEST(l2.truncated);

    auto r3 = response_from_json(*parse_message(serialize(to_json(response{ok_response{}}))));
    BOOST_REQUIRE(r3);
    BOOST_TEST(std::holds_alternative<ok_response>(*r3));
}

BOOST_AUTO_TEST_CASE(malformed_responses_are_rejected) {
    for (const char* text : {
             R"({"v":1,"type":"stat","file_type":"fifo","size":1,"mode":1,"mtime_ns":0})",
             R"({"v":1,"type":"stat","file_type":"file","size":-1,"mode":1,"mtime_ns":0})",
             R"({"v":1,"type":"listing","entries":[["a","file"]]})",
             R"({"v":1,"type":"listing","entries":[["a","file",-3]]})",
             R"({"v":1,"type":"listing"})",
             R"({"v":1,"type":"surprise"})",
         }) {
        auto v = parse_message(text);
        BOOST_REQUIRE(v);
        BOOST_TEST((response_from_json(*v).error() == agent_errc::malformed_message), text);
    }
}

// Unpadded base64 (length % 4 == 3) once made the decoder write past its buffer (sized for
// padded input); a hostile guest reaches it through any response, the boot ping included.
BOOST_AUTO_TEST_CASE(unpadded_base64_in_a_response_decodes_exactly) {
    response_reader reader;
    const std::string body = R"({"v":1,"type":"error","errno":5,"message":{"base64":"QUFBQUFBQUFBQUFBQUFBQUFBQUF"}})";
    std::vector<std::uint8_t> wire;
    encode_frame(wire, frame_kind::message, std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
    reader.feed(wire);
    auto item = reader.next();
    BOOST_REQUIRE(item);
    BOOST_REQUIRE(item->has_value());
    const auto& e = std::get<error_response>(std::get<response>(**item));
    BOOST_TEST(e.message == std::string(20, 'A'));
}

BOOST_AUTO_TEST_CASE(base64_round_trips_every_length_and_refuses_what_is_not_base64) {
    std::string bytes;
    for (int n = 0; n < 70; ++n) {
        BOOST_TEST(*base64::decode(base64::encode(bytes)) == bytes);
        bytes.push_back(static_cast<char>(n * 37 + 11));
    }
    BOOST_TEST(*base64::decode("YQ") == "a");     // unpadded, % 4 == 2
    BOOST_TEST(*base64::decode("YWI") == "ab");   // unpadded, % 4 == 3
    BOOST_TEST(*base64::decode("YQ==") == "a");
    BOOST_TEST(*base64::decode("YR==") == "a");   // unused bits of the last character are ignored
    for (const char* bad : {"Y", "YWJjZ", "Y===", "=YWI", "YW=I", "YQ=", "YW\nJj", "YWJj===", "YW J"})
        BOOST_TEST(!base64::decode(bad).has_value(), bad);
}

BOOST_AUTO_TEST_CASE(a_response_with_invalid_base64_is_malformed) {
    for (const char* text : {R"({"v":1,"type":"error","errno":5,"message":{"base64":"QUF*"}})",
                             R"({"v":1,"type":"error","errno":5,"message":{"base64":"Q"}})",
                             R"({"v":1,"type":"error","errno":5,"message":{"base64":"QQ==QQ=="}})"}) {
        auto r = response_from_json(*parse_message(text));
        BOOST_TEST((r.error() == agent_errc::malformed_message), text);
    }
}

// What the guest says about names, modes and statuses reaches the embedder: out-of-range or
// path-like values are protocol errors, not data.
BOOST_AUTO_TEST_CASE(responses_with_out_of_range_or_path_like_values_are_malformed) {
    for (const char* text : {
             R"({"v":1,"type":"listing","entries":[["a/b","file",1]],"truncated":false})",
             R"({"v":1,"type":"listing","entries":[["..","dir",0]],"truncated":false})",
             R"({"v":1,"type":"listing","entries":[[".","dir",0]],"truncated":false})",
             R"({"v":1,"type":"listing","entries":[["","file",0]],"truncated":false})",
             R"({"v":1,"type":"listing","entries":[["a\u0000b","file",0]],"truncated":false})",
             R"({"v":1,"type":"stat","file_type":"file","size":1,"mode":65535,"mtime_ns":0})",
             R"({"v":1,"type":"exit","exit_code":256,"signal":0})",
             R"({"v":1,"type":"exit","exit_code":-2,"signal":0})",
             R"({"v":1,"type":"exit","exit_code":-1,"signal":65})",
         }) {
        auto r = response_from_json(*parse_message(text));
        BOOST_TEST((r.error() == agent_errc::malformed_message), text);
    }
    const std::string long_name(max_entry_name + 1, 'n');
    auto listing = R"({"v":1,"type":"listing","entries":[[")" + long_name + R"(","file",0]],"truncated":false})";
    BOOST_TEST((response_from_json(*parse_message(listing)).error() == agent_errc::malformed_message));
    auto ok = response_from_json(*parse_message(R"({"v":1,"type":"listing","entries":[["a b.txt","file",3]],"truncated":false})"));
    BOOST_TEST(std::get<listing_response>(*ok).entries.at(0).name == "a b.txt");
}

BOOST_AUTO_TEST_CASE(a_long_error_message_from_the_guest_is_cut) {
    const std::string text = R"({"v":1,"type":"error","errno":5,"message":")" + std::string(100000, 'm') + R"("})";
    auto r = response_from_json(*parse_message(text));
    BOOST_TEST(std::get<error_response>(*r).message.size() == max_error_message);
}

BOOST_AUTO_TEST_CASE(exec_timeouts_beyond_thirty_days_are_malformed) {
    const auto at = [](std::uint64_t ms) {
        return R"({"v":1,"op":"exec","argv":["true"],"timeout_ms":)" + std::to_string(ms) + "}";
    };
    BOOST_TEST(request_from_json(*parse_message(at(max_timeout_ms))).has_value());
    BOOST_TEST((request_from_json(*parse_message(at(max_timeout_ms + 1))).error() == agent_errc::malformed_message));
}
