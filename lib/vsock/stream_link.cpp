#include "vsock/stream_link.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::vsock {

namespace {
std::uint32_t load_u32(const std::uint8_t* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);  // x86-64 only, as packet.cpp
    return v;
}
}  // namespace

stream_link::stream_link(muxer& mux, role r) : mux_(mux), role_(r) {
    if (role_ == role::initiator) queue_sync();
}

void stream_link::queue_sync() {
    out_.insert(out_.end(), sync_marker.begin(), sync_marker.end());
}

void stream_link::on_sync() {
    ++syncs_;
    if (synced_) {
        // The peer started over: what either side had in flight belongs to connections that
        // no longer exist on the other end.
        mux_.fail_all(vsock_errc::connection_reset);
        out_.clear();
        out_sent_ = 0;
    }
    synced_ = true;
    if (role_ == role::responder) queue_sync();
}

void stream_link::fail() {
    error_ = vsock_errc::link_broken;
    in_.clear();
    in_.shrink_to_fit();
    mux_.fail_all(vsock_errc::link_broken);
}

std::size_t stream_link::feed(std::span<const std::uint8_t> bytes) {
    std::size_t events = 0;
    while (!bytes.empty() && !failed()) {
        if (!synced_) {
            // Discard everything up to and including the first SYNC.
            const std::uint8_t b = bytes.front();
            bytes = bytes.subspan(1);
            sync_matched_ = b == sync_marker[sync_matched_] ? sync_matched_ + 1 : (b == sync_marker[0] ? 1 : 0);
            if (sync_matched_ == sync_marker.size()) {
                sync_matched_ = 0;
                on_sync();
                ++events;
            }
            continue;
        }
        // The first 8 bytes (a SYNC, or the start of a frame), then the header, then exactly
        // the payload it announces: in_ never holds more than one frame, whatever the peer claims.
        std::size_t want = in_.size() < sync_marker.size() ? sync_marker.size() : frame_overhead;
        if (in_.size() >= frame_overhead) want += load_u32(in_.data() + 4 + 24);  // header.len
        const std::size_t take = std::min(bytes.size(), want - in_.size());
        in_.insert(in_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
        bytes = bytes.subspan(take);
        if (in_.size() == sync_marker.size() && std::equal(in_.begin(), in_.end(), sync_marker.begin())) {
            in_.clear();
            on_sync();
            ++events;
            continue;
        }
        if (in_.size() < frame_overhead) continue;
        const header h = decode(std::span<const std::uint8_t, header_size>(in_.data() + 4, header_size));
        // Checked once, as soon as the header is complete and before any payload is taken.
        if (in_.size() == frame_overhead &&
            (load_u32(in_.data()) != frame_magic || h.len > max_payload || (h.len != 0 && h.operation != op::rw))) {
            fail();
            break;
        }
        if (in_.size() < frame_overhead + h.len) continue;
        mux_.on_guest_packet(h, std::span(in_).subspan(frame_overhead));
        ++packets_in_;
        ++events;
        in_.clear();
    }
    return events;
}

std::span<const std::uint8_t> stream_link::pending_output() {
    if (failed()) return {};
    if (out_sent_ == out_.size()) {
        out_.clear();
        out_sent_ = 0;
    }
    while (synced_ && out_.size() - out_sent_ < output_high_water) {
        auto p = mux_.poll_output(max_payload);
        if (!p) break;
        p->hdr.len = static_cast<std::uint32_t>(p->payload.size());
        const auto head = encode(p->hdr);
        const std::uint32_t magic = frame_magic;
        const auto* m = reinterpret_cast<const std::uint8_t*>(&magic);
        out_.insert(out_.end(), m, m + sizeof magic);
        out_.insert(out_.end(), head.begin(), head.end());
        out_.insert(out_.end(), p->payload.begin(), p->payload.end());
        ++packets_out_;
    }
    return std::span(out_).subspan(out_sent_);
}

void stream_link::consume_output(std::size_t n) {
    out_sent_ = std::min(out_.size(), out_sent_ + n);
    // Keep the buffer from creeping: drop what was sent once it is most of it.
    if (out_sent_ > output_high_water && out_sent_ * 2 > out_.size()) {
        out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_sent_));
        out_sent_ = 0;
    }
}

}  // namespace mimobox::vsock
