// One connection from the host: read its request, serve it, answer. The agent's workers call
// this for every accepted vsock connection; the host library's unit tests call it on one end of
// a socket pair, so the sandbox layer is tested against the real agent without a VM.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mimobox::agent::guest {

inline constexpr const char* agent_version = "0.2.0";

/// What an init request changes in the guest. Tests substitute recorders: on a host these would
/// change the machine's hostname and entropy pool.
struct guest_system {
    std::function<int(const std::string& entropy)> seed_rng;         ///< 0 or -1 with errno
    std::function<int(const std::string& hostname)> set_hostname;   ///< 0 or -1 with errno
    std::function<int()> reseed_rng;                                 ///< 0 or -1 with errno; may be empty
    std::function<int(std::int64_t ns)> set_wall_clock;              ///< 0 or -1 with errno; may be empty
    /// RNDADDENTROPY on /dev/urandom, sethostname(2), RNDRESEEDCRNG, clock_settime(CLOCK_REALTIME).
    static const guest_system& real();
};

void serve_connection(int conn, const guest_system& sys);

}  // namespace mimobox::agent::guest
