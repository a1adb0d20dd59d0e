// The retained tail of a VM's serial console. Appended on the VM's strand, read from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace mimobox::vmm {

class console_log {
public:
    explicit console_log(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}

    void append(std::string_view bytes);
    /// Everything retained (at most `capacity` bytes, the most recent).
    std::string contents() const;
    /// The last `lines` lines retained.
    std::string tail_lines(std::size_t lines) const;
    /// Bytes ever appended; positions below are in this absolute numbering.
    std::uint64_t total() const;
    /// Whether `text` occurs in what is retained, looking only at matches that end after `from`.
    bool contains_since(std::string_view text, std::uint64_t from) const;
    /// The first line containing `text`, or empty.
    std::string find_line(std::string_view text) const;

private:
    mutable std::mutex mutex_;
    std::size_t capacity_;
    std::string buffer_;  // holds at most 2 * capacity_, trimmed to capacity_ when exceeded
    std::uint64_t total_ = 0;
};

}  // namespace mimobox::vmm
