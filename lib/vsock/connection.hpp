// One vsock stream connection's protocol state (virtio 1.2 §5.10.6.3-6), sans-io: fed guest
// packets and host reads/writes, it says which packets to send to the guest next. Credit-based
// flow control both ways keeps every buffer bounded: the guest may not send past the receive
// buffer we advertise (buf_alloc), and we send only within the guest's advertised credit.
#pragma once

#include "vsock/packet.hpp"
#include "vsock/vsock_errc.hpp"

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mimobox::vsock {

// Named from the host's side. The guest end of the serial transport runs the same code with the
// roles mirrored: there `guest_cid` is the host's CID (the peer), `host_port` the guest's own port
// and `local_cid` the guest's CID.
struct endpoint {
    std::uint64_t guest_cid = 3;
    std::uint32_t host_port = 0;
    std::uint32_t guest_port = 0;
    std::uint64_t local_cid = host_cid;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

struct outgoing_packet {
    header hdr;
    std::vector<std::uint8_t> payload;  // RW only
};

class connection {
public:
    enum class state { connecting, established, closing, closed };

    static constexpr std::uint32_t default_buf_alloc = 256 * 1024;
    static constexpr std::size_t tx_capacity = 64 * 1024;  // host bytes queued for the guest

    /// Host-initiated: the first packet out is REQUEST.
    static connection connect(endpoint ep, std::uint32_t buf_alloc = default_buf_alloc);
    /// Guest-initiated: `request` arrived; the first packet out is RESPONSE.
    static connection accept(endpoint ep, const header& request, std::uint32_t buf_alloc = default_buf_alloc);

    // ---- input from the guest (one packet addressed to this connection)
    void on_guest_packet(const header& h, std::span<const std::uint8_t> payload);

    // ---- input from the host application
    /// Queues up to tx_capacity bytes for the guest; returns how many were taken (0 = wait).
    std::size_t write(std::span<const std::uint8_t> data);
    /// Takes buffered guest data; may queue a credit update for the guest.
    std::size_t read(std::span<std::uint8_t> out);
    /// No more host data: SHUTDOWN(send) once the queued bytes are out.
    void shutdown_write();
    /// Full close: SHUTDOWN(both), then the guest's RST (or muxer::expire_closing's RST after
    /// muxer::close_timeout) ends it. If the guest has already shut down both directions, RST at
    /// once: nothing is left to say, and the guest would only answer a SHUTDOWN with an RST of
    /// its own. Nobody reads a closing connection: what the guest still sends is discarded.
    void close();
    /// close() would only acknowledge: the guest already closed and waits for nothing from us
    /// but the RST (its socket lingers until then).
    bool close_only_acknowledges() const noexcept { return state_ == state::established && peer_closed(); }
    /// Immediate RST.
    void reset();
    /// The transport went away (VM stopped, TRANSPORT_RESET): closed with `why`, nothing sent.
    void abort(vsock_errc why);

    // ---- output to the guest
    bool has_output() const noexcept;
    /// The next packet for the guest's RX queue; RW payload at most `max_payload` bytes.
    std::optional<outgoing_packet> poll_output(std::size_t max_payload);

    // ---- status
    state current_state() const noexcept { return state_; }
    const endpoint& ends() const noexcept { return ep_; }
    std::size_t readable() const noexcept { return rx_.size(); }
    /// Bytes write() would take now.
    std::size_t writable() const noexcept;
    /// The guest sends no more: once readable() is 0, reads see end of stream.
    bool peer_done_sending() const noexcept { return peer_shutdown_ & shutdown_send; }
    /// The guest shut down both directions: all that is left to say is the RST that ends it.
    bool peer_closed() const noexcept { return (peer_shutdown_ & (shutdown_receive | shutdown_send)) == (shutdown_receive | shutdown_send); }
    /// Why the connection failed, if it did.
    boost::system::error_code error() const noexcept { return error_; }
    /// Bytes the guest's credit still allows us to send.
    std::uint32_t peer_credit() const noexcept;
    /// One line of flow-control state, for stall diagnostics.
    std::string describe() const;

private:
    connection(endpoint ep, std::uint32_t buf_alloc, state s) : ep_(ep), buf_alloc_(buf_alloc), state_(s) {}
    header make_header(op o) const noexcept;
    void fail(vsock_errc e, bool send_rst);
    void end(bool send_rst);  // closed, nothing more to send but (optionally) an RST; no error
    void maybe_queue_credit_update();

    endpoint ep_;
    std::uint32_t buf_alloc_;
    state state_;
    boost::system::error_code error_;

    std::deque<std::uint8_t> rx_;  // guest -> host, at most buf_alloc_ bytes
    std::deque<std::uint8_t> tx_;  // host -> guest, at most tx_capacity bytes
    std::uint32_t rx_cnt_ = 0, fwd_cnt_ = 0, advertised_fwd_cnt_ = 0;
    std::uint32_t tx_cnt_ = 0, peer_buf_alloc_ = 0, peer_fwd_cnt_ = 0;
    std::uint32_t peer_shutdown_ = 0;

    bool send_request_ = false, send_response_ = false, send_rst_ = false;
    bool send_credit_update_ = false, send_credit_request_ = false, credit_requested_ = false;
    bool shutdown_write_ = false, shutdown_sent_ = false;
    std::uint32_t shutdown_flags_ = 0;
};

}  // namespace mimobox::vsock
