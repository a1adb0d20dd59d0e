// Problems finding or trusting the guest kernel and initramfs on disk.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vm {

enum class asset_errc {
    assets_dir_not_found = 1,  ///< the assets directory does not exist or is not a directory
    asset_missing,             ///< the kernel or initramfs is not in the directory
    checksum_missing,          ///< no `<file>.sha256` sidecar next to the asset
    checksum_malformed,        ///< the sidecar does not start with 64 hex digits
    asset_integrity,           ///< the file's SHA-256 differs from its sidecar
};

const boost::system::error_category& asset_category() noexcept;

inline boost::system::error_code make_error_code(asset_errc e) noexcept {
    return {static_cast<int>(e), asset_category()};
}

}  // namespace mimobox::vm

template <>
struct boost::system::is_error_code_enum<mimobox::vm::asset_errc> : std::true_type {};
