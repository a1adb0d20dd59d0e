// The binary fields of a snapshot body, little-endian, and a reader that checks every length
// and count against what is left. Devices save and restore themselves with these; nothing here
// needs JSON or a hash, so device code (and its fuzz targets) depends on this alone.
#pragma once

#include "mimobox/vm/error.hpp"

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace mimobox::snapshot {

/// Most items a count in a body may announce: far above any real snapshot.
inline constexpr std::uint32_t max_item_count = 1u << 16;

/// Appends little-endian fields to a body. Sections are (u32 tag, u32 length, bytes).
class state_writer {
public:
    void u8(std::uint8_t v) { out_.push_back(v); }
    void u16(std::uint16_t v) { put(v, 2); }
    void u32(std::uint32_t v) { put(v, 4); }
    void u64(std::uint64_t v) { put(v, 8); }
    void boolean(bool v) { u8(v ? 1 : 0); }
    /// u32 length, then the bytes.
    void bytes(std::span<const std::uint8_t> b);
    /// Raw bytes of a trivially copyable struct (KVM's own structures), length-prefixed.
    template <class T>
    void raw(const T& v) {
        bytes(std::span(reinterpret_cast<const std::uint8_t*>(&v), sizeof v));
    }
    /// Starts a section; end_section() patches its length.
    void begin_section(std::uint32_t tag);
    void end_section();
    std::vector<std::uint8_t> take() { return std::move(out_); }
    const std::vector<std::uint8_t>& data() const { return out_; }

private:
    void put(std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    std::vector<std::uint8_t> out_;
    std::vector<std::size_t> open_sections_;
};

/// Reads what state_writer wrote. The first failure sticks: later reads return zeros and
/// error() reports snapshot_errc::corrupt_state, so a caller checks once at the end.
class state_reader {
public:
    explicit state_reader(std::span<const std::uint8_t> in) : in_(in) {}

    std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
    std::uint16_t u16() { return static_cast<std::uint16_t>(get(2)); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
    std::uint64_t u64() { return get(8); }
    bool boolean();
    /// A length-prefixed byte string of at most `max_len` bytes.
    std::span<const std::uint8_t> bytes(std::size_t max_len);
    /// A struct written by state_writer::raw: the length must be exactly sizeof(T).
    template <class T>
    T raw() {
        T v{};
        auto b = bytes(sizeof(T));
        if (b.size() == sizeof(T)) std::memcpy(&v, b.data(), sizeof(T));
        else fail();
        return v;
    }
    /// A count of items that follow, each at least `min_item_bytes` long: refused if the rest of
    /// the input cannot hold that many, so a hostile count allocates nothing.
    std::uint32_t count(std::size_t min_item_bytes);
    /// Enters section `tag` (which must come next); the returned reader covers its bytes.
    state_reader section(std::uint32_t tag);
    bool at_end() const noexcept { return pos_ == in_.size(); }
    /// Fails unless every byte was consumed (trailing bytes mean a format this build lacks).
    void expect_end() {
        if (!at_end()) fail();
    }
    boost::system::error_code error() const noexcept;
    bool failed() const noexcept { return failed_; }

private:
    std::uint64_t get(int n);
    void fail() noexcept { failed_ = true; }
    std::span<const std::uint8_t> in_;
    std::size_t pos_ = 0;
    bool failed_ = false;
};

}  // namespace mimobox::snapshot
