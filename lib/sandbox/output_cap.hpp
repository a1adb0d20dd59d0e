// Host-side caps on what a guest sends for one operation. The guest agent promises its own
// caps (max_output, one frame at a time); a hostile guest keeps none of them, so whatever the
// host accumulates goes through here. Sans-io and fuzzed (test/fuzz/fuzz_sandbox_responses.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mimobox::vm::detail {

/// Appends what fits of `data` to `into` without passing `cap` bytes; true if anything was cut.
inline bool append_capped(std::string& into, std::string_view data, std::uint64_t cap) {
    const std::uint64_t room = into.size() >= cap ? 0 : cap - into.size();
    const std::size_t take = data.size() < room ? data.size() : static_cast<std::size_t>(room);
    into.append(data.substr(0, take));
    return take < data.size();
}

/// Whether `data` fits in `cap` bytes after `into`'s (all-or-nothing, for file contents:
/// a file cut short is worse than an error).
inline bool fits_under_cap(const std::string& into, std::size_t more, std::uint64_t cap) {
    return into.size() <= cap && more <= cap - into.size();
}

}  // namespace mimobox::vm::detail
