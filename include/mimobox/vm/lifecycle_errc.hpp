// Misuse of a VM's lifecycle: an operation its current state does not allow.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vm {

enum class lifecycle_errc {
    invalid_state = 1,  ///< e.g. pause before boot, boot twice, resume while running
    vm_stopped,         ///< the VM stopped (or was stopped) before the operation could complete
};

const boost::system::error_category& lifecycle_category() noexcept;

inline boost::system::error_code make_error_code(lifecycle_errc e) noexcept {
    return {static_cast<int>(e), lifecycle_category()};
}

}  // namespace mimobox::vm

template <>
struct boost::system::is_error_code_enum<mimobox::vm::lifecycle_errc> : std::true_type {};
