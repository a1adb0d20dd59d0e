// Errors of microvm_sandbox operations that are about the sandbox and its agent, not about the
// command or file asked for (those report through guest_command_result and guest_file_errc).
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vm {

enum class sandbox_errc {
    ready_timeout = 1,   ///< the guest agent did not answer within sandbox_config::ready_timeout
    agent_disconnected,  ///< the agent's connection ended before the operation's final answer
    agent_protocol,      ///< the agent sent something the protocol does not allow
    agent_error,         ///< the agent could not start the operation (e.g. fork failed in the guest)
    vm_stopped,          ///< the VM stopped while the operation ran
    stdin_closed,        ///< stdin was closed already, or the command was started without it
    unsupported_transport,  ///< sandbox_config::transport names a transport this build lacks
    agent_timeout,       ///< the agent made no progress within the host's own deadline (see sandbox_config)
};

const boost::system::error_category& sandbox_category() noexcept;

inline boost::system::error_code make_error_code(sandbox_errc e) noexcept {
    return {static_cast<int>(e), sandbox_category()};
}

}  // namespace mimobox::vm

template <>
struct boost::system::is_error_code_enum<mimobox::vm::sandbox_errc> : std::true_type {};
