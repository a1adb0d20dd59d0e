#include "agent/frame.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::agent {

namespace {
constexpr std::size_t length_bytes = 4;
bool known_kind(std::uint8_t k) { return k >= 1 && k <= 6; }
}  // namespace

std::array<std::uint8_t, 5> frame_header(frame_kind kind, std::size_t body_size) {
    const auto length = static_cast<std::uint32_t>(1 + body_size);
    std::array<std::uint8_t, length_bytes + 1> hdr;
    std::memcpy(hdr.data(), &length, length_bytes);  // x86-64 host and guest: little-endian
    hdr[length_bytes] = static_cast<std::uint8_t>(kind);
    return hdr;
}

void encode_frame(std::vector<std::uint8_t>& out, frame_kind kind, std::span<const std::uint8_t> body) {
    const auto hdr = frame_header(kind, body.size());
    out.insert(out.end(), hdr.begin(), hdr.end());
    out.insert(out.end(), body.begin(), body.end());
}

std::size_t frame_decoder::feed(std::span<const std::uint8_t> bytes) {
    if (error_ || ready_) return 0;
    std::size_t used = 0;
    while (used < bytes.size()) {
        // Take just enough for the length, then just enough for the frame: never more, so the
        // caller's remaining bytes belong to the next frame.
        std::size_t want = length_bytes;
        if (partial_.size() >= length_bytes) want = length_bytes + frame_length();
        const std::size_t take = std::min(want - partial_.size(), bytes.size() - used);
        partial_.insert(partial_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(used),
                        bytes.begin() + static_cast<std::ptrdiff_t>(used + take));
        used += take;
        if (partial_.size() == length_bytes) {
            // The length is known before any body is buffered: refuse what we would not hold.
            const std::uint32_t length = frame_length();
            if (length == 0 || length > max_frame_size - length_bytes) {
                error_ = agent_errc::frame_too_large;
                return used;
            }
            continue;
        }
        if (partial_.size() == want) {
            const std::uint8_t kind = partial_[length_bytes];
            if (!known_kind(kind)) {
                error_ = agent_errc::unknown_frame_kind;
                return used;
            }
            ready_ = frame{static_cast<frame_kind>(kind),
                           std::vector<std::uint8_t>(partial_.begin() + length_bytes + 1, partial_.end())};
            partial_.clear();
            return used;
        }
    }
    return used;
}

std::uint32_t frame_decoder::frame_length() const noexcept {
    std::uint32_t length;
    std::memcpy(&length, partial_.data(), length_bytes);
    return length;
}

std::optional<frame> frame_decoder::next() {
    std::optional<frame> f = std::move(ready_);
    ready_.reset();
    return f;
}

boost::system::error_code frame_decoder::finish() const {
    if (error_) return error_;
    if (!partial_.empty()) return agent_errc::truncated_frame;
    return {};
}

}  // namespace mimobox::agent
