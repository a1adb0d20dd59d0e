// All vsock connections of one VM, sans-io: routes each guest packet to its connection (or
// answers RST), accepts guest-initiated connections on host listener ports, allocates host
// ports for host-initiated ones, and hands out the next packet for the guest's RX queue.
// The virtio device model drives it; the Asio stream layer sits on top of its connections.
#pragma once

#include "vsock/connection.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <deque>
#include <map>
#include <set>
#include <utility>

namespace mimobox::vsock {

class muxer {
public:
    using clock = std::chrono::steady_clock;
    /// Connections per VM; a REQUEST beyond it is answered with RST.
    static constexpr std::size_t max_connections = 1024;
    /// Guest connections per listener accepted and not yet taken (a listen backlog); a REQUEST
    /// beyond it is answered with RST.
    static constexpr std::size_t max_backlog = 64;
    /// How long a connection the host closed waits for the guest's RST before we send ours and
    /// forget it. A guest that never answers would otherwise hold a connection slot forever.
    static constexpr std::chrono::milliseconds close_timeout{2000};
    /// Host ports for host-initiated connections, as Firecracker: [2^30, 2^31).
    static constexpr std::uint32_t ephemeral_first = 1u << 30, ephemeral_last = (1u << 31) - 1;

    /// `local_cid` is the host's own CID here; the guest end of the serial transport passes the
    /// host's CID as `guest_cid` (the peer) and its own as `local_cid`.
    explicit muxer(std::uint64_t guest_cid, std::uint64_t local_cid = host_cid)
        : guest_cid_(guest_cid), local_cid_(local_cid) {}

    /// A host-initiated connection to `guest_port`; its REQUEST is queued. nullopt when the
    /// connection table is full.
    std::optional<endpoint> connect(std::uint32_t guest_port);
    /// Guest REQUESTs to `host_port` are accepted from now on (and reported by take_accepted).
    void listen(std::uint32_t host_port) { listeners_.insert(host_port); }
    void unlisten(std::uint32_t host_port) { listeners_.erase(host_port); }
    /// Connections the guest opened to a listener, oldest first.
    std::optional<endpoint> take_accepted(std::uint32_t host_port);

    /// A packet from the guest's TX queue (payload is the RW data, already length-checked).
    void on_guest_packet(const header& h, std::span<const std::uint8_t> payload);
    /// The next packet for the guest's RX queue, payload at most `max_payload` bytes.
    std::optional<outgoing_packet> poll_output(std::size_t max_payload);
    bool has_output() const;

    connection* find(const endpoint& ep);
    /// Closes the connection (connection::close) and, if it now waits for the guest's RST,
    /// starts its close_timeout at `now`.
    void close(const endpoint& ep, clock::time_point now);
    /// Resets the closing connections whose close_timeout ran out by `now`; returns how many.
    std::size_t expire_closing(clock::time_point now);
    /// When expire_closing next has something to do, if anything waits.
    std::optional<clock::time_point> next_close_deadline() const;
    /// Closing connections that the guest left unanswered and we reset (expire_closing).
    std::uint64_t close_timeouts() const noexcept { return close_timeouts_; }
    /// Drops closed connections whose output has drained and that `keep` does not hold on to;
    /// returns how many.
    template <class Keep>
    std::size_t collect_closed(Keep keep) {
        std::size_t n = 0;
        for (auto it = connections_.begin(); it != connections_.end();) {
            if (it->second.current_state() == connection::state::closed && !it->second.has_output() &&
                !keep(it->second.ends())) {
                close_deadlines_.erase(it->first);
                it = connections_.erase(it);
                ++n;
            } else {
                ++it;
            }
        }
        return n;
    }
    std::size_t collect_closed() {
        return collect_closed([](const endpoint&) { return false; });
    }
    std::size_t size() const noexcept { return connections_.size(); }
    std::uint64_t guest_cid() const noexcept { return guest_cid_; }
    /// Every connection's flow-control state plus queued control packets, for stall diagnostics.
    std::string describe() const;
    /// TRANSPORT_RESET (snapshot restore) or VM stop: every connection fails with `why`.
    void fail_all(vsock_errc why);

private:
    using key = std::pair<std::uint32_t, std::uint32_t>;  // (host port, guest port)
    std::uint64_t guest_cid_;
    std::uint64_t local_cid_;
    std::map<key, connection> connections_;
    std::set<std::uint32_t> listeners_;
    std::map<std::uint32_t, std::deque<endpoint>> accepted_;
    std::map<key, clock::time_point> close_deadlines_;  // closing connections' RST deadlines
    std::uint64_t close_timeouts_ = 0;
    std::deque<header> stray_rsts_;  // RSTs for packets that match no connection
    std::uint32_t next_port_ = ephemeral_first;
    key last_served_{0, 0};
};

}  // namespace mimobox::vsock
