// Every error the library reports, and the conditions to test them by.
//
// Each domain has its own enum and category (the category names are "mimobox.<domain>"). Most
// callers need not know which domain an error came from: compare against a `condition`, as in
// `if (ec == mimobox::vm::condition::timed_out)`, and it matches every code of that kind
// (sandbox_errc::agent_timeout and ready_timeout, and boost::system::errc::timed_out).
// Cancellation is Asio's: boost::asio::error::operation_aborted.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/error_condition.hpp>

#include <type_traits>

namespace mimobox::vm {

/// The VMM as a whole: the host platform, the configuration, the guest images (category
/// "mimobox.microvm").
enum class microvm_errc {
    unsupported_platform = 1,  ///< no usable /dev/kvm (missing, no permission, or KVM_RUN fails)
    kvm_api_mismatch,          ///< KVM_GET_API_VERSION is not 12
    missing_kvm_capability,    ///< a capability the VMM requires is absent
    // configuration (microvm_config::validate)
    zero_vcpus,
    too_many_vcpus,            ///< above KVM_CAP_MAX_VCPUS or the VMM's own limit
    memory_too_small,          ///< below the minimum, or too small for kernel + initramfs
    memory_too_large,          ///< above the VMM's limit
    kernel_not_found,
    initramfs_not_found,
    cmdline_too_long,          ///< over the kernel's cmdline_size
    cmdline_invalid,           ///< NUL, newline or another control character in an extra argument
    invalid_vsock_cid,         ///< vsock_cid below 3 or 0xffffffff
    // guest images (lib/boot)
    not_a_kernel,              ///< neither a bzImage nor an ELF
    truncated_kernel,          ///< the file ends before the header's sizes say
    boot_protocol_too_old,     ///< bzImage protocol below 2.12 or without the 64-bit entry
    unsupported_elf,           ///< ELF that is not x86-64 executable, or without PVH note/loadable segments
    kernel_does_not_fit,       ///< a segment or the image lies outside guest RAM
    initramfs_does_not_fit,    ///< no room below initrd_addr_max
    invalid_vsock_link,        ///< microvm_config::vsock is not a vsock_link value (configuration)
    kick_signal_in_use,        ///< the vCPU kick signal (see vcpu_kick_signal.hpp) has another handler installed
    invalid_kick_signal,       ///< set_vcpu_kick_signal: not a real-time signal, or VMs have started already
};

/// A VM's lifecycle: an operation its current state does not allow ("mimobox.lifecycle").
enum class lifecycle_errc {
    invalid_state = 1,  ///< e.g. pause before boot, boot twice, resume while running
    vm_stopped,         ///< the VM stopped (or was stopped) before the operation could complete
};

/// Finding or trusting the guest kernel and initramfs on disk ("mimobox.asset").
enum class asset_errc {
    assets_dir_not_found = 1,  ///< the assets directory does not exist or is not a directory
    asset_missing,             ///< the kernel or initramfs is not in the directory
    checksum_missing,          ///< no `<file>.sha256` sidecar next to the asset
    checksum_malformed,        ///< the sidecar does not start with 64 hex digits
    asset_integrity,           ///< the file's SHA-256 differs from its sidecar
};

/// microvm_sandbox operations, about the sandbox and its agent rather than the command or file
/// asked for: those report through guest_command_result and guest_file_errc ("mimobox.sandbox").
enum class sandbox_errc {
    ready_timeout = 1,   ///< the guest agent did not answer within sandbox_config::ready_timeout
    agent_disconnected,  ///< the agent's connection ended before the operation's final answer
    agent_protocol,      ///< the agent sent something the protocol does not allow
    agent_error,         ///< the agent could not start the operation (e.g. fork failed in the guest)
    vm_stopped,          ///< the VM stopped while the operation ran
    stdin_closed,        ///< stdin was closed already, or the command was started without it
    unsupported_transport,  ///< sandbox_config::transport names a transport this build lacks
    agent_timeout,       ///< the agent made no progress within the host's own deadline (see sandbox_config)
    stream_broken,       ///< a cancelled stdin write left a frame half-sent: the stream hung up (the command was killed)
    internal_error,      ///< an unexpected exception inside the library (a bug: please report it)
};

/// Why a file operation failed inside the guest. The agent reports errno; this keeps the cases
/// callers act on and maps the rest to `io` ("mimobox.guest_file").
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

/// A vsock connection to the guest (kvm_backend::async_vsock_connect, vsock_stream)
/// ("mimobox.vsock").
enum class vsock_errc {
    connection_refused = 1,  ///< the guest answered REQUEST with RST (nobody listening)
    connection_reset,        ///< the guest reset an established connection
    protocol_violation,      ///< the guest broke the protocol (e.g. sent beyond its credit): reset
    connection_closed,       ///< the connection was closed locally
    link_broken,             ///< the serial line carrying vsock packets lost framing: every connection is reset
};

/// Snapshots: capturing, storing, loading and restoring them ("mimobox.snapshot").
enum class snapshot_errc {
    not_a_snapshot = 1,          ///< the state does not start with the snapshot magic
    unsupported_format_version,  ///< written by a format this build does not read
    truncated,                   ///< the state or the memory file ends early
    corrupt_state,               ///< the state's hash, lengths or fields do not check out
    corrupt_memory,              ///< a memory chunk's hash differs from the state's record of it
    shape_mismatch,              ///< vCPU count or memory size differ from what the restore asks
    cpu_mismatch,                ///< another CPU vendor, or CPUID features the guest saw are missing here
    unsupported_vm,              ///< this VM cannot be captured: its vsock runs over the serial line (COM2)
};

/// restore_pool's own errors ("mimobox.restore_pool").
enum class restore_pool_errc {
    shape_mismatch = 1,  ///< the snapshot's vCPU count, memory size or vsock link is not the shells'
    stopped,             ///< the pool was stopped (async_stop or its destructor)
    exhausted,           ///< max_shells were out and none came back within acquire_timeout
    invalid_config,      ///< a restore_pool_config that cannot work (see restore_pool's constructor)
};

/// vm_pool's own errors ("mimobox.pool").
enum class pool_errc {
    exhausted = 1,   ///< max_size were out and acquire_timeout is 0 (no wait asked for)
    stopped,         ///< the pool was stopped (async_stop or its destructor)
    acquire_timeout, ///< no sandbox became free within acquire_timeout
    unhealthy,       ///< starting sandboxes failed max_consecutive_failures times in a row
    invalid_config,  ///< a vm_pool_config that cannot work (see vm_pool's constructor)
};

/// Kinds of failure that cut across the domains. A condition compares equal to every error
/// code listed for it; codes of other libraries that mean the same are noted.
enum class condition {
    vm_stopped = 1,     ///< the VM stopped, on its own or destroyed, before the operation ended:
                        ///< lifecycle_errc::vm_stopped, sandbox_errc::vm_stopped
    timed_out,          ///< a host-side deadline passed: sandbox_errc::ready_timeout, agent_timeout; errc::timed_out
    not_found,          ///< something named is not there: guest_file_errc::not_found, asset_errc::assets_dir_not_found,
                        ///< asset_missing, microvm_errc::kernel_not_found, initramfs_not_found; errc::no_such_file_or_directory
    permission_denied,  ///< guest_file_errc::permission_denied; errc::permission_denied
    invalid_state,      ///< not allowed now: lifecycle_errc::invalid_state, sandbox_errc::stdin_closed
    invalid_config,     ///< a microvm_config or sandbox_config value out of range (microvm_errc's configuration
                        ///< codes, invalid_kick_signal, sandbox_errc::unsupported_transport)
    bad_guest_image,    ///< a kernel or initramfs that cannot be booted or fails its check (microvm_errc's image
                        ///< codes, asset_errc's checksum codes)
    host_unsupported,   ///< this host cannot run VMs as asked: microvm_errc::unsupported_platform, kvm_api_mismatch,
                        ///< missing_kvm_capability, kick_signal_in_use
    agent_failed,       ///< the guest agent hung up, broke the protocol or could not start the operation:
                        ///< sandbox_errc::agent_disconnected, agent_protocol, agent_error
    connection_failed,  ///< a vsock connection refused, reset, closed or lost (every vsock_errc)
    bad_snapshot,       ///< a snapshot that is damaged, of another format, or for another VM shape or CPU
    out_of_host_resources,  ///< the host ran out of file descriptors or memory: errc::too_many_files_open,
                            ///< too_many_files_open_in_system, not_enough_memory (what KVM, mmap,
                            ///< memfd and eventfd report when a process holds too many VMs)
};


const boost::system::error_category& microvm_category() noexcept;
inline boost::system::error_code make_error_code(microvm_errc e) noexcept { return {static_cast<int>(e), microvm_category()}; }

const boost::system::error_category& lifecycle_category() noexcept;
inline boost::system::error_code make_error_code(lifecycle_errc e) noexcept { return {static_cast<int>(e), lifecycle_category()}; }

const boost::system::error_category& asset_category() noexcept;
inline boost::system::error_code make_error_code(asset_errc e) noexcept { return {static_cast<int>(e), asset_category()}; }

const boost::system::error_category& sandbox_category() noexcept;
inline boost::system::error_code make_error_code(sandbox_errc e) noexcept { return {static_cast<int>(e), sandbox_category()}; }

const boost::system::error_category& guest_file_category() noexcept;
inline boost::system::error_code make_error_code(guest_file_errc e) noexcept { return {static_cast<int>(e), guest_file_category()}; }

const boost::system::error_category& vsock_category() noexcept;
inline boost::system::error_code make_error_code(vsock_errc e) noexcept { return {static_cast<int>(e), vsock_category()}; }

const boost::system::error_category& snapshot_category() noexcept;
inline boost::system::error_code make_error_code(snapshot_errc e) noexcept { return {static_cast<int>(e), snapshot_category()}; }
const boost::system::error_category& restore_pool_category() noexcept;
inline boost::system::error_code make_error_code(restore_pool_errc e) noexcept { return {static_cast<int>(e), restore_pool_category()}; }

const boost::system::error_category& pool_category() noexcept;
inline boost::system::error_code make_error_code(pool_errc e) noexcept { return {static_cast<int>(e), pool_category()}; }

const boost::system::error_category& condition_category() noexcept;
inline boost::system::error_condition make_error_condition(condition c) noexcept {
    return {static_cast<int>(c), condition_category()};
}

/// The guest_file_errc for an errno value reported by the guest agent.
guest_file_errc guest_file_errc_from_errno(int guest_errno) noexcept;

}  // namespace mimobox::vm


template <>
struct boost::system::is_error_code_enum<mimobox::vm::microvm_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::lifecycle_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::asset_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::sandbox_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::guest_file_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::vsock_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::snapshot_errc> : std::true_type {};

template <>
struct boost::system::is_error_code_enum<mimobox::vm::restore_pool_errc> : std::true_type {};
template <>
struct boost::system::is_error_code_enum<mimobox::vm::pool_errc> : std::true_type {};
template <>
struct boost::system::is_error_condition_enum<mimobox::vm::condition> : std::true_type {};
