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

    /// Blocks until one frame is complete. nullopt on EOF, a read error or a protocol error.
    std::optional<frame> read(int fd);
    /// Feeds bytes already read; frames come out of next().
    void feed(std::span<const std::uint8_t> bytes);
    std::optional<frame> next() { return decoder.next(); }
};

std::uint64_t monotonic_us();

}  // namespace mimobox::agent::guest
