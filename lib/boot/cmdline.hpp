// Kernel command line builder. Arguments are validated as they are added, so a caller's extra
// arguments cannot smuggle in control characters or exceed the kernel's limit unnoticed.
#pragma once

#include <boost/system/error_code.hpp>

#include <string>
#include <string_view>

namespace mimobox::boot {

class kernel_cmdline {
public:
    /// Appends space-separated arguments. microvm_errc::cmdline_invalid for NUL, newline or any
    /// other control character; nothing is appended then.
    boost::system::error_code append(std::string_view args);
    /// microvm_errc::cmdline_too_long when the line (without NUL) is longer than `limit`.
    boost::system::error_code check_length(std::size_t limit) const;
    const std::string& str() const noexcept { return line_; }

private:
    std::string line_;
};

}  // namespace mimobox::boot
