#include "snapshot/state_stream.hpp"

namespace mimobox::snapshot {

using vm::snapshot_errc;

namespace {
std::uint64_t get_le(std::span<const std::uint8_t> in, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t(in[at + i]) << (8 * i);
    return v;
}
}  // namespace

void state_writer::bytes(std::span<const std::uint8_t> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
}

void state_writer::begin_section(std::uint32_t tag) {
    u32(tag);
    open_sections_.push_back(out_.size());
    u32(0);  // length, patched by end_section
}

void state_writer::end_section() {
    const std::size_t at = open_sections_.back();
    open_sections_.pop_back();
    const auto len = static_cast<std::uint32_t>(out_.size() - at - 4);
    for (int i = 0; i < 4; ++i) out_[at + i] = static_cast<std::uint8_t>(len >> (8 * i));
}

std::uint64_t state_reader::get(int n) {
    if (failed_ || in_.size() - pos_ < static_cast<std::size_t>(n)) {
        fail();
        return 0;
    }
    const auto v = get_le(in_, pos_, n);
    pos_ += n;
    return v;
}

bool state_reader::boolean() {
    const auto v = u8();
    if (v > 1) fail();
    return v == 1;
}

std::span<const std::uint8_t> state_reader::bytes(std::size_t max_len) {
    const auto len = u32();
    if (failed_ || len > max_len || in_.size() - pos_ < len) {
        fail();
        return {};
    }
    auto out = in_.subspan(pos_, len);
    pos_ += len;
    return out;
}

std::uint32_t state_reader::count(std::size_t min_item_bytes) {
    const auto n = u32();
    if (failed_ || n > max_item_count || (min_item_bytes > 0 && (in_.size() - pos_) / min_item_bytes < n)) {
        fail();
        return 0;
    }
    return n;
}

state_reader state_reader::section(std::uint32_t tag) {
    const auto t = u32();
    const auto len = u32();
    if (failed_ || t != tag || in_.size() - pos_ < len) {
        fail();
        state_reader empty({});
        empty.fail();
        return empty;
    }
    state_reader inner(in_.subspan(pos_, len));
    pos_ += len;
    return inner;
}

boost::system::error_code state_reader::error() const noexcept {
    return failed_ ? boost::system::error_code(snapshot_errc::corrupt_state) : boost::system::error_code{};
}

}  // namespace mimobox::snapshot
