// The guest end of the serial transport (microvm_config::vsock = com2_uart, for kernels without
// virtio-vsock). The host frames vsock packets over ttyS1 (lib/vsock/stream_link.hpp); this
// bridge runs the very same muxer and connection state machines, roles mirrored, and joins each
// connection the host opens to `port` with a fresh connection to the agent's AF_UNIX listener. The
// agent's server therefore serves both transports with the same code.
//
// The kernel command line says whether to run it: `mimobox.vsock_uart=ttyS1 mimobox.vsock_cid=N`.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mimobox::agent::guest {

struct serial_bridge_config {
    std::string tty_path;     ///< "/dev/ttyS1"
    std::uint64_t cid = 3;    ///< this guest's CID, as the host addresses it
    unsigned port = 52;       ///< the vsock port the host connects to
    sockaddr_un target{};     ///< the agent's listener
    socklen_t target_length = 0;
};

/// nullopt when the command line does not ask for the serial transport (or names something
/// that is not a plain tty name).
std::optional<serial_bridge_config> serial_bridge_from_cmdline(std::string_view cmdline, unsigned port);

/// The agent's AF_UNIX listener address for `port` (abstract namespace: nothing on disk).
void agent_unix_address(unsigned port, sockaddr_un& addr, socklen_t& length);

/// Bridges until the tty fails; returns why, as an errno value, having closed what it opened.
int run_serial_bridge(const serial_bridge_config& config);

}  // namespace mimobox::agent::guest
