// How a vsock connection can fail, as seen by the host application.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vsock {

enum class vsock_errc {
    connection_refused = 1,  ///< the guest answered REQUEST with RST (nobody listening)
    connection_reset,        ///< the guest reset an established connection
    protocol_violation,      ///< the guest broke the protocol (e.g. sent beyond its credit): reset
    connection_closed,       ///< the connection was closed locally
    link_broken,             ///< the serial line carrying vsock packets lost framing: every connection is reset
};

const boost::system::error_category& vsock_category() noexcept;

inline boost::system::error_code make_error_code(vsock_errc e) noexcept {
    return {static_cast<int>(e), vsock_category()};
}

}  // namespace mimobox::vsock

template <>
struct boost::system::is_error_code_enum<mimobox::vsock::vsock_errc> : std::true_type {};
