// vsock packets over a byte stream (the serial transport's second UART), sans-io. Each packet
// is framed as a 4-byte magic, the 44-byte virtio-vsock header and `len` payload bytes, so the
// muxer and connection state machines, credit included, run unchanged on both ends: the host's
// vsock_host and the guest agent's bridge.
//
// Start-up: a tty echoes what it receives until the program that opened it sets raw mode, and
// bytes may sit in a line from before. So the guest's bridge (the initiator) sends an 8-byte
// SYNC once its tty is raw and flushed; the host (the responder) discards everything before a
// SYNC, sends nothing before it, and answers with a SYNC; the initiator likewise discards input
// until that answer. A SYNC in the middle of the stream means the peer started over (a restarted
// bridge): every connection is reset and the responder answers again.
//
// A UART is reliable but has no framing of its own: a frame that does not parse (wrong magic,
// an oversized payload, a payload on a control packet) means the stream can no longer be
// trusted, so the link fails for good: every connection is aborted with vsock_errc::link_broken
// and later input is ignored. The peer can only hurt its own connections this way.
#pragma once

#include "vsock/muxer.hpp"

#include <boost/system/error_code.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace mimobox::vsock {

class stream_link {
public:
    /// "MVSK" little-endian; resynchronises nothing, it only makes a lost byte detectable early.
    static constexpr std::uint32_t frame_magic = 0x4b53564d;
    static constexpr std::size_t frame_overhead = 4 + header_size;
    /// Largest RW payload either way, as the virtio device's.
    static constexpr std::uint32_t max_payload = 64 * 1024;
    /// Output is pulled from the muxer only while fewer bytes than this wait to be sent, so a
    /// slow line applies backpressure to the connections instead of growing a buffer.
    static constexpr std::size_t output_high_water = 16 * 1024;

    enum class role { initiator, responder };
    static constexpr std::array<std::uint8_t, 8> sync_marker = {'M', 'V', 'S', 'K', 'S', 'Y', 'N', 'C'};

    stream_link(muxer& mux, role r);

    /// Bytes from the peer, split anywhere. Returns how many events that calls for action
    /// happened: packets that reached the muxer, and SYNCs (0: nothing new to act on).
    std::size_t feed(std::span<const std::uint8_t> bytes);

    /// Bytes to send next (empty when the muxer has nothing). Stays valid until consume_output.
    std::span<const std::uint8_t> pending_output();
    void consume_output(std::size_t n);

    bool failed() const noexcept { return static_cast<bool>(error_); }
    boost::system::error_code error() const noexcept { return error_; }
    std::uint64_t packets_in() const noexcept { return packets_in_; }
    std::uint64_t packets_out() const noexcept { return packets_out_; }
    bool synced() const noexcept { return synced_; }
    std::uint64_t syncs() const noexcept { return syncs_; }

private:
    void fail();
    void on_sync();
    void queue_sync();

    muxer& mux_;
    role role_;
    bool synced_ = false;
    std::size_t sync_matched_ = 0;  // marker bytes seen so far while unsynced
    std::uint64_t syncs_ = 0;
    boost::system::error_code error_;
    std::vector<std::uint8_t> in_;   // the partial frame being received
    std::vector<std::uint8_t> out_;  // framed bytes; those before out_sent_ are on the line
    std::size_t out_sent_ = 0;
    std::uint64_t packets_in_ = 0, packets_out_ = 0;
};

}  // namespace mimobox::vsock
