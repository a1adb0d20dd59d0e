// Hundreds of VMs in one process need more descriptors than the usual soft limit.
#pragma once

namespace mimobox::vm::detail {

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit, where allowed (a process
/// in a sandbox of its own may not be: its limit then stays, and running out of descriptors is
/// condition::out_of_host_resources). Every VM holds a dozen descriptors (VM, vCPUs, eventfds;
/// the memory file's mapping holds none): hundreds of clones pass a soft limit of 1024 long
/// before the hard one. Called by restore_pool and fork.
void raise_fd_limit() noexcept;

}  // namespace mimobox::vm::detail
