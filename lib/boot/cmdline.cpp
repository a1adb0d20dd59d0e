#include "boot/cmdline.hpp"

#include "mimobox/vm/error.hpp"

namespace mimobox::boot {

boost::system::error_code kernel_cmdline::append(std::string_view args) {
    for (unsigned char c : args)
        if (c < 0x20 || c == 0x7f) return vm::microvm_errc::cmdline_invalid;
    auto first = args.find_first_not_of(' ');
    if (first == std::string_view::npos) return {};
    args = args.substr(first, args.find_last_not_of(' ') - first + 1);
    if (!line_.empty()) line_.push_back(' ');
    line_.append(args);
    return {};
}

boost::system::error_code kernel_cmdline::check_length(std::size_t limit) const {
    if (line_.size() > limit) return vm::microvm_errc::cmdline_too_long;
    return {};
}

}  // namespace mimobox::boot
