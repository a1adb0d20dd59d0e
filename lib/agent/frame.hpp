// Framing of the guest agent protocol, shared by the host library and the guest agent. Sans-io:
// the decoder is fed bytes as they arrive and yields whole frames; the encoder appends to a
// buffer. One vsock connection carries one operation; on it, frames are
//
//     u32 length (little-endian, bytes after this field) | u8 kind | body
//
// `message` frames carry a JSON object (Boost.JSON) with the protocol version; the data kinds
// carry raw bytes (stdin, stdout, stderr, file contents), so binary data is never escaped.
#pragma once

#include "agent/agent_errc.hpp"

#include <boost/system/result.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mimobox::agent {

inline constexpr std::uint32_t protocol_version = 1;
/// Largest frame accepted (header included): bounds what a hostile peer can make us buffer.
inline constexpr std::uint32_t max_frame_size = 1u << 20;
/// Largest data body a sender puts in one frame.
inline constexpr std::uint32_t max_data_chunk = 64 * 1024;

enum class frame_kind : std::uint8_t {
    message = 1,      // JSON object
    stdin_data = 2,
    stdout_data = 3,
    stderr_data = 4,
    file_data = 5,
    end_of_data = 6,  // body: one byte, the frame_kind whose stream ended
};

struct frame {
    frame_kind kind;
    std::vector<std::uint8_t> body;
};

/// The 5 bytes that precede a body of `body_size` bytes (to send a body without copying it).
std::array<std::uint8_t, 5> frame_header(frame_kind kind, std::size_t body_size);
/// Appends one frame to `out`.
void encode_frame(std::vector<std::uint8_t>& out, frame_kind kind, std::span<const std::uint8_t> body);

class frame_decoder {
public:
    /// Consumes bytes; returns how many were used (all of them unless a frame is complete, in
    /// which case the rest waits for the next call after next()). An error is final.
    std::size_t feed(std::span<const std::uint8_t> bytes);
    /// The next complete frame, if any.
    std::optional<frame> next();
    /// Call when the stream ended: truncated_frame if it ended inside a frame.
    boost::system::error_code finish() const;
    boost::system::error_code error() const noexcept { return error_; }

private:
    std::uint32_t frame_length() const noexcept;  // of the frame in partial_ (>= 4 bytes there)
    std::vector<std::uint8_t> partial_;
    std::optional<frame> ready_;
    boost::system::error_code error_;
};

}  // namespace mimobox::agent
