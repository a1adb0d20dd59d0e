#include "wire.hpp"

#define BOOST_TEST_MODULE agent_wire
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

// The agent's request reading, over an AF_UNIX socket pair (MSG_PEEK behaves there as on vsock):
// a whole request is decoded but left queued until consumed, and nothing is returned twice.

using namespace mimobox::agent;
using namespace mimobox::agent::guest;

namespace {

struct socket_pair {
    int host = -1, agent = -1;
    socket_pair() {
        int fds[2];
        BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        host = fds[0];
        agent = fds[1];
    }
    ~socket_pair() {
        ::close(host);
        ::close(agent);
    }
};

std::vector<std::uint8_t> framed(frame_kind kind, const std::string& body) {
    std::vector<std::uint8_t> out;
    encode_frame(out, kind, std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
    return out;
}

void send_bytes(int fd, std::span<const std::uint8_t> bytes) { BOOST_REQUIRE(write_all(fd, bytes.data(), bytes.size())); }

std::string body_of(const frame& f) { return std::string(f.body.begin(), f.body.end()); }

// Bytes still queued in the agent's socket, without waiting.
std::size_t queued(int fd) {
    std::uint8_t buf[1 << 16];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 ? 0 : static_cast<std::size_t>(n);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_whole_request_is_decoded_but_stays_queued_until_consumed) {
    socket_pair s;
    const auto request = framed(frame_kind::message, R"({"op":"exec"})");
    send_bytes(s.host, request);
    frame_reader reader;
    auto f = reader.read_request(s.agent);
    BOOST_REQUIRE(f.has_value());
    BOOST_TEST(body_of(*f) == R"({"op":"exec"})");
    BOOST_TEST(reader.unconsumed == request.size());
    BOOST_TEST(queued(s.agent) == request.size());
    BOOST_TEST(reader.consume(s.agent));
    BOOST_TEST(reader.unconsumed == 0u);
    BOOST_TEST(queued(s.agent) == 0u);
}

BOOST_AUTO_TEST_CASE(frames_behind_the_request_come_out_once_and_the_next_read_sees_only_new_bytes) {
    socket_pair s;
    auto wire = framed(frame_kind::message, "request");
    const auto kill = framed(frame_kind::message, "kill");
    wire.insert(wire.end(), kill.begin(), kill.end());
    send_bytes(s.host, wire);
    frame_reader reader;
    auto f = reader.read_request(s.agent);
    BOOST_REQUIRE(f.has_value());
    BOOST_TEST(body_of(*f) == "request");
    reader.feed({});  // as serve_exec does: the decoder holds one frame at a time
    auto behind = reader.next();
    BOOST_REQUIRE(behind.has_value());
    BOOST_TEST(body_of(*behind) == "kill");
    // read() takes the peeked bytes off first; it must not decode them a second time.
    send_bytes(s.host, framed(frame_kind::stdin_data, "later"));
    auto later = reader.read(s.agent);
    BOOST_REQUIRE(later.has_value());
    BOOST_TEST((later->kind == frame_kind::stdin_data));
    BOOST_TEST(body_of(*later) == "later");
    BOOST_TEST(reader.unconsumed == 0u);
    BOOST_TEST(queued(s.agent) == 0u);
}

BOOST_AUTO_TEST_CASE(a_request_that_arrives_in_pieces_is_read_the_usual_way) {
    socket_pair s;
    const auto request = framed(frame_kind::message, std::string(3000, 'x'));
    send_bytes(s.host, std::span(request).first(100));
    std::thread rest([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        send_bytes(s.host, std::span(request).subspan(100));
    });
    frame_reader reader;
    auto f = reader.read_request(s.agent);
    rest.join();
    BOOST_REQUIRE(f.has_value());
    BOOST_TEST(f->body.size() == 3000u);
    BOOST_TEST(reader.unconsumed == 0u);
    BOOST_TEST(queued(s.agent) == 0u);
}

BOOST_AUTO_TEST_CASE(consuming_after_the_host_reset_still_takes_the_queued_bytes) {
    socket_pair s;
    send_bytes(s.host, framed(frame_kind::message, "request"));
    frame_reader reader;
    BOOST_REQUIRE(reader.read_request(s.agent).has_value());
    ::shutdown(s.host, SHUT_RDWR);
    BOOST_TEST(reader.consume(s.agent));  // queued bytes survive the hang-up
    std::uint8_t byte;
    BOOST_TEST(::recv(s.agent, &byte, 1, 0) == 0);  // then the end of the stream
}

BOOST_AUTO_TEST_CASE(a_closed_connection_gives_no_request) {
    socket_pair s;
    ::shutdown(s.host, SHUT_WR);
    frame_reader reader;
    BOOST_TEST(!reader.read_request(s.agent).has_value());
    BOOST_TEST(reader.unconsumed == 0u);
}
