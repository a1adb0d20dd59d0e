// The host's side of one agent connection, sans-io: bytes from the guest in, typed items out
// (output/file data chunks, end-of-data marks, response messages). The coroutines in
// lib/sandbox only move bytes between a vsock_stream and this reader, so every protocol rule
// is tested without a VM. Frames the guest may not send (stdin data, requests) are errors.
#pragma once

#include "agent/frame.hpp"
#include "agent/messages.hpp"

#include <boost/system/result.hpp>

#include <deque>
#include <span>
#include <variant>
#include <vector>

namespace mimobox::agent {

struct data_chunk {
    frame_kind kind;  ///< stdout_data, stderr_data or file_data
    std::vector<std::uint8_t> bytes;
};
struct data_end {
    frame_kind kind;  ///< the stream that ended
};
using inbound = std::variant<data_chunk, data_end, response>;

class response_reader {
public:
    /// Takes all of `bytes` (frames are decoded as they complete). Once an error is reported,
    /// further input is ignored.
    void feed(std::span<const std::uint8_t> bytes);
    /// The next item, nullopt when more bytes are needed, or the protocol error that ended the
    /// conversation (agent_errc).
    boost::system::result<std::optional<inbound>> next();
    /// At end of stream: truncated_frame if the guest stopped inside a frame.
    boost::system::error_code finish() const;

private:
    void decode(std::span<const std::uint8_t> bytes);
    frame_decoder decoder_;
    std::deque<inbound> ready_;
    boost::system::error_code error_;
};

/// Request frame bytes, appended to `out`.
void encode_request(std::vector<std::uint8_t>& out, const request& r);
/// Data of `kind`, split into frames of at most max_data_chunk bytes.
void encode_data(std::vector<std::uint8_t>& out, frame_kind kind, std::span<const std::uint8_t> data);
void encode_end(std::vector<std::uint8_t>& out, frame_kind kind);

}  // namespace mimobox::agent
