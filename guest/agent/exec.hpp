// exec: one command per connection, its output streamed as produced.
#pragma once

#include "wire.hpp"

#include <cstdint>

namespace mimobox::agent::guest {

/// The longest timeout exec accepts: 30 days. Larger values (which would overflow the agent's
/// microsecond clock arithmetic) are refused with EINVAL.
inline constexpr std::uint64_t max_exec_timeout_ms = 30ull * 24 * 3600 * 1000;

/// Makes exec put each command in its own cgroup (under /sys/fs/cgroup, cgroup v2) when it can,
/// so that a timeout or a kill ends the whole tree. Without it, they kill the process group.
void enable_exec_cgroups();

/// Reaps every child of the process that has exited (PID 1's orphans included); exec's commands
/// have their status kept for the worker that waits for them. Called on SIGCHLD.
void reap_children();

/// Runs `e` and streams its output on `conn`; ends with an exit (or error) message unless the
/// host hung up, which kills the command's tree like a kill request does.
void serve_exec(int conn, const exec_request& e, frame_reader& reader);

}  // namespace mimobox::agent::guest
