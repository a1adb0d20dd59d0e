// Blocking frame I/O on the agent's side of one vsock connection.
#pragma once

#include "agent/frame.hpp"
#include "agent/messages.hpp"

#include <optional>
#include <span>
#include <vector>

namespace mimobox::agent::guest {

/// Writes everything or fails (EINTR retried).
bool write_all(int fd, const std::uint8_t* p, std::size_t n);
bool send_frame(int fd, frame_kind kind, std::span<const std::uint8_t> body);
/// Sends the operation's answer, always the last message on its connection, and shuts the
/// connection down both ways at once, so that the SHUTDOWN is queued with the answer and leaves
/// in the same kick; the worker's close() later sends nothing more.
bool send_answer(int fd, const response& r);
/// errno and its text as an error response.
error_response errno_response(int error_number);

/// The frames of one connection: buffered bytes plus the decoder.
struct frame_reader {
    frame_decoder decoder;
    std::vector<std::uint8_t> pending;
    /// Bytes decoded from a MSG_PEEK that are still queued in the socket (see read_request).
    std::size_t unconsumed = 0;

    /// Blocks until one frame is complete. nullopt on EOF, a read error or a protocol error.
    std::optional<frame> read(int fd);
    /// Like read(), but leaves the bytes of a request that arrived whole queued in the socket
    /// (`unconsumed`): Linux sends a CREDIT_UPDATE packet whenever a read empties a vsock
    /// socket, and one sent while a command runs costs its own kick. An operation that reads
    /// the bytes later (consume), or never, lets that update join its answer or vanish.
    std::optional<frame> read_request(int fd);
    /// Takes the peeked bytes off the socket (they were decoded already). False on an error.
    bool consume(int fd);
    /// Feeds bytes already read; frames come out of next().
    void feed(std::span<const std::uint8_t> bytes);
    std::optional<frame> next() { return decoder.next(); }
};

std::uint64_t monotonic_us();

}  // namespace mimobox::agent::guest
