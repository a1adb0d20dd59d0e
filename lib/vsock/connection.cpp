#include "vsock/connection.hpp"

#include <algorithm>
#include <sstream>

namespace mimobox::vsock {

connection connection::connect(endpoint ep, std::uint32_t buf_alloc) {
    connection c(ep, buf_alloc, state::connecting);
    c.send_request_ = true;
    return c;
}

connection connection::accept(endpoint ep, const header& request, std::uint32_t buf_alloc) {
    connection c(ep, buf_alloc, state::established);
    c.peer_buf_alloc_ = request.buf_alloc;
    c.peer_fwd_cnt_ = request.fwd_cnt;
    c.send_response_ = true;
    return c;
}

header connection::make_header(op o) const noexcept {
    header h;
    h.src_cid = ep_.local_cid;
    h.dst_cid = ep_.guest_cid;
    h.src_port = ep_.host_port;
    h.dst_port = ep_.guest_port;
    h.type = type_stream;
    h.operation = o;
    h.buf_alloc = buf_alloc_;
    h.fwd_cnt = fwd_cnt_;
    return h;
}

std::uint32_t connection::peer_credit() const noexcept {
    const std::uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;  // u32 wrapping, as the spec counts
    return in_flight > peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

std::size_t connection::writable() const noexcept {
    if (state_ != state::established || shutdown_write_ || (peer_shutdown_ & shutdown_receive)) return 0;
    return tx_capacity - tx_.size();
}

void connection::fail(vsock_errc e, bool send_rst) {
    if (!error_) error_ = e;
    end(send_rst);
}

void connection::end(bool send_rst) {
    state_ = state::closed;
    send_rst_ = send_rst;
    send_request_ = send_response_ = send_credit_update_ = send_credit_request_ = false;
    tx_.clear();
}

void connection::on_guest_packet(const header& h, std::span<const std::uint8_t> payload) {
    if (state_ == state::closed) return;
    if (h.type != type_stream) return fail(vsock_errc::protocol_violation, true);
    // Every packet carries the guest's current credit.
    peer_buf_alloc_ = h.buf_alloc;
    peer_fwd_cnt_ = h.fwd_cnt;
    switch (h.operation) {
    case op::response:
        if (state_ != state::connecting) return fail(vsock_errc::protocol_violation, true);
        state_ = state::established;
        break;
    case op::rst: {
        // Refused while connecting, reset while open, or the expected end of our own close.
        const bool expected = state_ == state::closing;
        const vsock_errc why = state_ == state::connecting ? vsock_errc::connection_refused : vsock_errc::connection_reset;
        fail(why, false);
        if (expected) error_ = {};
        break;
    }
    case op::rw: {
        if (state_ != state::established && state_ != state::closing) return fail(vsock_errc::protocol_violation, true);
        if (peer_shutdown_ & shutdown_send) return fail(vsock_errc::protocol_violation, true);
        // The guest may only send what our advertised buffer has room for.
        if (payload.size() != h.len || rx_.size() + payload.size() > buf_alloc_)
            return fail(vsock_errc::protocol_violation, true);
        if (state_ == state::closing) break;  // the host closed: nobody will read it, keep nothing
        rx_.insert(rx_.end(), payload.begin(), payload.end());
        rx_cnt_ += static_cast<std::uint32_t>(payload.size());
        break;
    }
    case op::credit_update: break;  // the credit fields were taken above
    case op::credit_request:
        send_credit_update_ = true;
        break;
    case op::shutdown:
        peer_shutdown_ |= h.flags & (shutdown_receive | shutdown_send);
        if (peer_closed() && rx_.empty()) {
            // Both directions closed by the guest: acknowledge with RST, as the spec's clean close.
            fail(vsock_errc::connection_closed, true);
            error_ = {};
        }
        break;
    case op::request:
    default:
        return fail(vsock_errc::protocol_violation, true);
    }
    if (peer_credit() > 0) credit_requested_ = false;
}

std::size_t connection::write(std::span<const std::uint8_t> data) {
    std::size_t n = std::min(data.size(), writable());
    tx_.insert(tx_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    return n;
}

std::size_t connection::read(std::span<std::uint8_t> out) {
    std::size_t n = std::min(out.size(), rx_.size());
    std::copy_n(rx_.begin(), n, out.begin());
    rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
    fwd_cnt_ += static_cast<std::uint32_t>(n);
    maybe_queue_credit_update();
    return n;
}

void connection::maybe_queue_credit_update() {
    // The guest believes it has buf_alloc - (rx_cnt - advertised_fwd_cnt) bytes of room. Tell
    // it about freed space once that belief drops below a quarter of the buffer, so a reader
    // that keeps up never stalls the guest and a stopped reader stops it.
    if (state_ != state::established && state_ != state::closing) return;
    const std::uint32_t believed_used = rx_cnt_ - advertised_fwd_cnt_;
    if (fwd_cnt_ != advertised_fwd_cnt_ && buf_alloc_ - std::min(believed_used, buf_alloc_) < buf_alloc_ / 4)
        send_credit_update_ = true;
}

void connection::shutdown_write() {
    if (state_ == state::established) shutdown_write_ = true;
}

void connection::close() {
    if (state_ == state::connecting) return fail(vsock_errc::connection_closed, true);
    if (state_ != state::established) return;
    if (peer_closed()) return end(true);
    shutdown_write_ = true;
    shutdown_flags_ = shutdown_receive | shutdown_send;
    state_ = state::closing;
    rx_ = {};  // nobody reads a closed stream; free the memory now, not at the guest's RST
}

void connection::reset() {
    if (state_ == state::closed) return;
    fail(vsock_errc::connection_closed, true);
}

void connection::abort(vsock_errc why) {
    if (state_ == state::closed) return;
    fail(why, false);
}

bool connection::has_output() const noexcept {
    // Mirrors poll_output exactly: claiming output that poll_output then withholds would make
    // the device spend a guest receive buffer on nothing, again and again.
    if (send_rst_ || send_request_ || send_response_) return true;
    if (state_ == state::closed || state_ == state::connecting) return false;
    if (send_credit_update_) return true;
    if (!tx_.empty() && peer_credit() > 0) return true;
    if (!tx_.empty() && peer_credit() == 0 && !credit_requested_) return true;
    return shutdown_write_ && !shutdown_sent_ && tx_.empty();
}

std::optional<outgoing_packet> connection::poll_output(std::size_t max_payload) {
    if (send_rst_) {
        send_rst_ = false;
        return outgoing_packet{make_header(op::rst), {}};
    }
    if (send_request_) {
        send_request_ = false;
        return outgoing_packet{make_header(op::request), {}};
    }
    if (send_response_) {
        send_response_ = false;
        return outgoing_packet{make_header(op::response), {}};
    }
    if (state_ == state::closed || state_ == state::connecting) return std::nullopt;
    if (!tx_.empty()) {
        const std::size_t n = std::min({tx_.size(), max_payload, std::size_t(peer_credit())});
        if (n > 0) {
            outgoing_packet p{make_header(op::rw), std::vector<std::uint8_t>(tx_.begin(), tx_.begin() + static_cast<std::ptrdiff_t>(n))};
            p.hdr.len = static_cast<std::uint32_t>(n);
            tx_.erase(tx_.begin(), tx_.begin() + static_cast<std::ptrdiff_t>(n));
            tx_cnt_ += static_cast<std::uint32_t>(n);
            advertised_fwd_cnt_ = fwd_cnt_;
            send_credit_update_ = false;  // this packet carries the same information
            return p;
        }
        if (peer_credit() == 0 && !credit_requested_) {
            credit_requested_ = true;
            return outgoing_packet{make_header(op::credit_request), {}};
        }
    }
    if (send_credit_update_) {
        send_credit_update_ = false;
        advertised_fwd_cnt_ = fwd_cnt_;
        return outgoing_packet{make_header(op::credit_update), {}};
    }
    if (shutdown_write_ && !shutdown_sent_ && tx_.empty()) {
        shutdown_sent_ = true;
        auto h = make_header(op::shutdown);
        h.flags = shutdown_flags_ ? shutdown_flags_ : shutdown_send;
        return outgoing_packet{h, {}};
    }
    return std::nullopt;
}

std::string connection::describe() const {
    std::ostringstream out;
    out << "host:" << ep_.host_port << " guest:" << ep_.guest_port << " state=" << static_cast<int>(state_)
        << " err='" << error_.message() << "' rx=" << rx_.size() << " rx_cnt=" << rx_cnt_ << " fwd_cnt=" << fwd_cnt_
        << " advertised_fwd_cnt=" << advertised_fwd_cnt_ << " tx=" << tx_.size() << " tx_cnt=" << tx_cnt_
        << " peer_buf_alloc=" << peer_buf_alloc_ << " peer_fwd_cnt=" << peer_fwd_cnt_ << " peer_credit=" << peer_credit()
        << " credit_requested=" << credit_requested_ << " pending_credit_update=" << send_credit_update_
        << " peer_shutdown=" << peer_shutdown_ << " shutdown_write=" << shutdown_write_
        << " shutdown_sent=" << shutdown_sent_;
    return out.str();
}

}  // namespace mimobox::vsock
