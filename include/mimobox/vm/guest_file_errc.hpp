// Why a file operation failed inside the guest. The agent reports errno; this maps it to the
// cases callers act on, keeping the rest as `io`.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vm {

enum class guest_file_errc {
    not_found = 1,       ///< ENOENT
    permission_denied,   ///< EACCES, EPERM, EROFS
    io,                  ///< EIO and anything not listed here
    out_of_space,        ///< ENOSPC, EDQUOT
    is_directory,        ///< EISDIR (e.g. reading or writing a directory)
    not_a_directory,     ///< ENOTDIR (a path component is a file)
    already_exists,      ///< EEXIST
    directory_not_empty, ///< ENOTEMPTY (remove without recursive)
    name_too_long,       ///< ENAMETOOLONG
    symlink_loop,        ///< ELOOP
    invalid_path,        ///< EINVAL, or a path the host refused before sending (relative, NUL bytes)
    busy,                ///< EBUSY, ETXTBSY
    file_too_large,      ///< EFBIG, or a read beyond sandbox_config::max_read_file_bytes (checked by the host)
    not_a_regular_file,  ///< ENXIO: reads and writes take regular files only (not FIFOs, devices, sockets)
};

const boost::system::error_category& guest_file_category() noexcept;

inline boost::system::error_code make_error_code(guest_file_errc e) noexcept {
    return {static_cast<int>(e), guest_file_category()};
}

/// The guest_file_errc for an errno value reported by the guest agent.
guest_file_errc guest_file_errc_from_errno(int guest_errno) noexcept;

}  // namespace mimobox::vm

template <>
struct boost::system::is_error_code_enum<mimobox::vm::guest_file_errc> : std::true_type {};
