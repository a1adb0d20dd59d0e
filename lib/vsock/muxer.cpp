#include "vsock/muxer.hpp"

namespace mimobox::vsock {

namespace {
constexpr std::size_t max_stray_rsts = 256;  // a flood of junk from the guest costs nothing past this
}

std::optional<endpoint> muxer::connect(std::uint32_t guest_port) {
    if (connections_.size() >= max_connections) return std::nullopt;
    for (std::uint32_t tries = 0; tries < max_connections + 1; ++tries) {
        const std::uint32_t port = next_port_;
        next_port_ = next_port_ == ephemeral_last ? ephemeral_first : next_port_ + 1;
        if (connections_.count({port, guest_port})) continue;
        endpoint ep{guest_cid_, port, guest_port, local_cid_};
        connections_.emplace(key{port, guest_port}, connection::connect(ep));
        return ep;
    }
    return std::nullopt;
}

std::optional<endpoint> muxer::take_accepted(std::uint32_t host_port) {
    auto it = accepted_.find(host_port);
    if (it == accepted_.end()) return std::nullopt;
    while (!it->second.empty()) {
        auto ep = it->second.front();
        it->second.pop_front();
        // Entries leave the queue when their connection ends (on_guest_packet); this check
        // only keeps a stale endpoint from ever becoming a stream.
        auto* c = find(ep);
        if (c && c->current_state() == connection::state::established) return ep;
    }
    return std::nullopt;
}

void muxer::close(const endpoint& ep, clock::time_point now) {
    auto* c = find(ep);
    if (!c) return;
    c->close();
    if (c->current_state() == connection::state::closing)
        close_deadlines_.try_emplace({ep.host_port, ep.guest_port}, now + close_timeout);
}

std::size_t muxer::expire_closing(clock::time_point now) {
    std::size_t n = 0;
    for (auto it = close_deadlines_.begin(); it != close_deadlines_.end();) {
        auto c = connections_.find(it->first);
        if (c == connections_.end() || c->second.current_state() != connection::state::closing) {
            it = close_deadlines_.erase(it);  // the guest's RST came in time
        } else if (now >= it->second) {
            c->second.reset();
            ++close_timeouts_;
            ++n;
            it = close_deadlines_.erase(it);
        } else {
            ++it;
        }
    }
    return n;
}

std::optional<muxer::clock::time_point> muxer::next_close_deadline() const {
    std::optional<clock::time_point> first;
    for (const auto& [k, due] : close_deadlines_)
        if (!first || due < *first) first = due;
    return first;
}

connection* muxer::find(const endpoint& ep) {
    auto it = connections_.find({ep.host_port, ep.guest_port});
    return it == connections_.end() ? nullptr : &it->second;
}

void muxer::on_guest_packet(const header& h, std::span<const std::uint8_t> payload) {
    auto answer_rst = [&] {
        if (h.operation == op::rst || stray_rsts_.size() >= max_stray_rsts) return;  // never answer RST with RST
        header r;
        r.src_cid = local_cid_;
        r.dst_cid = guest_cid_;
        r.src_port = h.dst_port;
        r.dst_port = h.src_port;
        r.type = type_stream;
        r.operation = op::rst;
        stray_rsts_.push_back(r);
    };
    // The guest may only speak as itself, to the host.
    if (h.src_cid != guest_cid_ || h.dst_cid != local_cid_) return answer_rst();
    const key k{h.dst_port, h.src_port};
    auto it = connections_.find(k);
    if (it != connections_.end()) {
        it->second.on_guest_packet(h, payload);
        // Accepted and not yet taken, then ended (a REQUEST/RST cycle): out of the backlog.
        if (it->second.current_state() == connection::state::closed)
            if (auto q = accepted_.find(h.dst_port); q != accepted_.end())
                std::erase(q->second, it->second.ends());
        return;
    }
    if (h.operation == op::request && h.type == type_stream && listeners_.count(h.dst_port) &&
        connections_.size() < max_connections && accepted_[h.dst_port].size() < max_backlog) {
        endpoint ep{guest_cid_, h.dst_port, h.src_port, local_cid_};
        connections_.emplace(k, connection::accept(ep, h));
        accepted_[h.dst_port].push_back(ep);
        return;
    }
    answer_rst();
}

bool muxer::has_output() const {
    if (!stray_rsts_.empty()) return true;
    for (auto& [k, c] : connections_)
        if (c.has_output()) return true;
    return false;
}

std::optional<outgoing_packet> muxer::poll_output(std::size_t max_payload) {
    if (!stray_rsts_.empty()) {
        outgoing_packet p{stray_rsts_.front(), {}};
        stray_rsts_.pop_front();
        return p;
    }
    // Round robin from the connection after the last one served, so one busy stream cannot
    // starve the others.
    auto start = connections_.upper_bound(last_served_);
    for (std::size_t n = 0; n < connections_.size(); ++n) {
        if (start == connections_.end()) start = connections_.begin();
        if (start->second.has_output()) {
            if (auto p = start->second.poll_output(max_payload)) {
                last_served_ = start->first;
                return p;
            }
        }
        ++start;
    }
    return std::nullopt;
}

void muxer::fail_all(vsock_errc why) {
    for (auto& [k, c] : connections_) c.abort(why);
    stray_rsts_.clear();
}

std::string muxer::describe() const {
    std::string out = "stray_rsts=" + std::to_string(stray_rsts_.size()) + " connections=" +
                      std::to_string(connections_.size()) + "\n";
    for (const auto& [k, c] : connections_) out += "  " + c.describe() + "\n";
    return out;
}

}  // namespace mimobox::vsock
