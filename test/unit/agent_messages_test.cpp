#include "agent/messages.hpp"

#define BOOST_TEST_MODULE agent_messages
#include <boost/test/unit_test.hpp>

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
