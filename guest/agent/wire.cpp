#include "wire.hpp"

#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mimobox::agent::guest {

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool send_frame(int fd, frame_kind kind, std::span<const std::uint8_t> body) {
    std::vector<std::uint8_t> out;
    encode_frame(out, kind, body);
    return write_all(fd, out.data(), out.size());
}

bool send_answer(int fd, const response& r) {
    auto text = serialize(to_json(r));
    const bool sent = send_frame(fd, frame_kind::message, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    ::shutdown(fd, SHUT_RDWR);  // the SHUTDOWN joins the answer; the worker's close sends nothing more
    return sent;
}

error_response errno_response(int error_number) { return {error_number, std::strerror(error_number)}; }

namespace {
// recv() retried when a signal interrupts it (connections are always sockets: vsock, or
// AF_UNIX behind the serial bridge).
ssize_t receive(int fd, std::uint8_t* buf, std::size_t n, int flags) {
    ssize_t r;
    do r = ::recv(fd, buf, n, flags);
    while (r < 0 && errno == EINTR);
    return r;
}
}  // namespace

void frame_reader::feed(std::span<const std::uint8_t> bytes) {
    pending.insert(pending.end(), bytes.begin(), bytes.end());
    while (!pending.empty() && !decoder.error()) {
        auto used = decoder.feed(pending);
        pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
        if (used == 0) break;  // a complete frame waits in the decoder
    }
}

std::optional<frame> frame_reader::read(int fd) {
    if (unconsumed && !consume(fd)) return std::nullopt;  // else the peeked bytes would come twice
    for (;;) {
        if (auto f = decoder.next()) return f;
        if (decoder.error()) return std::nullopt;
        if (!pending.empty()) {
            const auto before = pending.size();
            feed({});
            if (pending.size() != before) continue;
        }
        std::uint8_t buf[64 * 1024];
        const ssize_t n = receive(fd, buf, sizeof buf, 0);
        if (n <= 0) return std::nullopt;
        feed(std::span(buf, static_cast<std::size_t>(n)));
    }
}

std::optional<frame> frame_reader::read_request(int fd) {
    std::uint8_t buf[64 * 1024];
    const ssize_t n = receive(fd, buf, sizeof buf, MSG_PEEK);
    if (n <= 0) return std::nullopt;
    feed(std::span(buf, static_cast<std::size_t>(n)));
    unconsumed = static_cast<std::size_t>(n);
    if (auto f = decoder.next()) return f;
    // Not whole yet: take what was peeked off the socket and read the rest the usual way.
    if (decoder.error() || !consume(fd)) return std::nullopt;
    return read(fd);
}

bool frame_reader::consume(int fd) {
    std::uint8_t sink[4096];
    while (unconsumed) {
        const ssize_t r = receive(fd, sink, std::min(unconsumed, sizeof sink), 0);
        if (r <= 0) return false;  // they were queued: only a reset connection loses them
        unconsumed -= static_cast<std::size_t>(r);
    }
    return true;
}

std::uint64_t monotonic_us() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000 + std::uint64_t(ts.tv_nsec) / 1000;
}

}  // namespace mimobox::agent::guest
