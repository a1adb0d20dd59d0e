// Errors of the host <-> guest agent protocol.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::agent {

enum class agent_errc {
    frame_too_large = 1,   ///< a frame's length field exceeds max_frame_size
    unknown_frame_kind,    ///< a kind byte this protocol version does not define
    truncated_frame,       ///< the stream ended inside a frame
    malformed_message,     ///< a JSON frame that is not an object with the required fields
    version_mismatch,      ///< the peer speaks another protocol version
    unexpected_frame,      ///< a frame kind that may not travel in this direction
};

const boost::system::error_category& agent_category() noexcept;

inline boost::system::error_code make_error_code(agent_errc e) noexcept {
    return {static_cast<int>(e), agent_category()};
}

}  // namespace mimobox::agent

template <>
struct boost::system::is_error_code_enum<mimobox::agent::agent_errc> : std::true_type {};
