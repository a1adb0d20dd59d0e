#include "vmm/console_log.hpp"

#include <algorithm>

namespace mimobox::vmm {

void console_log::append(std::string_view bytes) {
    std::lock_guard lock(mutex_);
    buffer_.append(bytes);
    total_ += bytes.size();
    if (buffer_.size() > 2 * capacity_) buffer_.erase(0, buffer_.size() - capacity_);  // amortized O(1)
}

std::string console_log::contents() const {
    std::lock_guard lock(mutex_);
    return buffer_.size() > capacity_ ? buffer_.substr(buffer_.size() - capacity_) : buffer_;
}

std::string console_log::tail_lines(std::size_t lines) const {
    std::string all = contents();
    std::size_t pos = all.size();
    if (pos && all[pos - 1] == '\n') --pos;
    while (lines-- && pos != std::string::npos && pos > 0) pos = all.rfind('\n', pos - 1);
    return (pos == std::string::npos || pos == 0) ? all : all.substr(pos + 1);
}

std::uint64_t console_log::total() const {
    std::lock_guard lock(mutex_);
    return total_;
}

bool console_log::contains_since(std::string_view text, std::uint64_t from) const {
    std::lock_guard lock(mutex_);
    const std::uint64_t start = total_ - buffer_.size();
    std::uint64_t begin = from > start + text.size() ? from - text.size() : start;
    if (begin < start) begin = start;
    return std::string_view(buffer_).substr(begin - start).find(text) != std::string_view::npos;
}

std::string console_log::find_line(std::string_view text) const {
    std::string all = contents();
    auto at = all.find(text);
    if (at == std::string::npos) return {};
    auto end = all.find('\n', at);
    auto line = all.substr(at, end == std::string::npos ? std::string::npos : end - at);
    line.erase(std::remove(line.begin(), line.end(), '\r'), line.end());
    return line;
}

}  // namespace mimobox::vmm
