// The public error categories and conditions (include/mimobox/vm/error.hpp): one table per
// domain, one category class for all (lib/common/error_table.hpp).
#include "mimobox/vm/error.hpp"

#include "common/error_table.hpp"

#include <boost/system/errc.hpp>

#include <cerrno>

namespace mimobox::vm {

namespace {

using common::error_row;

constexpr int as_int(condition c) noexcept { return static_cast<int>(c); }

constexpr error_row microvm_rows[] = {
    {static_cast<int>(microvm_errc::unsupported_platform), "KVM is not usable on this host", as_int(condition::host_unsupported)},
    {static_cast<int>(microvm_errc::kvm_api_mismatch), "unexpected KVM API version", as_int(condition::host_unsupported)},
    {static_cast<int>(microvm_errc::missing_kvm_capability), "a required KVM capability is missing", as_int(condition::host_unsupported)},
    {static_cast<int>(microvm_errc::zero_vcpus), "vcpu_count must be at least 1", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::too_many_vcpus), "vcpu_count exceeds what KVM or the VMM allows", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::memory_too_small), "guest memory is too small", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::memory_too_large), "guest memory exceeds the VMM's limit", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::kernel_not_found), "guest kernel file not found or unreadable", as_int(condition::not_found)},
    {static_cast<int>(microvm_errc::initramfs_not_found), "initramfs file not found or unreadable", as_int(condition::not_found)},
    {static_cast<int>(microvm_errc::cmdline_too_long), "kernel command line exceeds the kernel's limit", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::cmdline_invalid), "kernel command line argument contains a control character", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::invalid_vsock_cid), "vsock_cid must be at least 3 and not 0xffffffff", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::not_a_kernel), "file is neither a bzImage nor an ELF kernel", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::truncated_kernel), "kernel image is truncated", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::boot_protocol_too_old), "bzImage boot protocol is older than 2.12 or lacks a 64-bit entry", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::unsupported_elf), "ELF kernel is not a loadable x86-64 image", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::kernel_does_not_fit), "kernel does not fit in guest memory", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::initramfs_does_not_fit), "initramfs does not fit below the kernel's initrd limit", as_int(condition::bad_guest_image)},
    {static_cast<int>(microvm_errc::invalid_vsock_link), "microvm_config::vsock names no known vsock link", as_int(condition::invalid_config)},
    {static_cast<int>(microvm_errc::kick_signal_in_use), "the vCPU kick signal already has a handler of the application's", as_int(condition::host_unsupported)},
    {static_cast<int>(microvm_errc::invalid_kick_signal), "the vCPU kick signal must be a real-time signal, chosen before any VM starts", as_int(condition::invalid_config)},
};

constexpr error_row lifecycle_rows[] = {
    {static_cast<int>(lifecycle_errc::invalid_state), "operation not allowed in the VM's current state", as_int(condition::invalid_state)},
    {static_cast<int>(lifecycle_errc::vm_stopped), "the VM stopped before the operation completed", as_int(condition::vm_stopped)},
};

constexpr error_row asset_rows[] = {
    {static_cast<int>(asset_errc::assets_dir_not_found), "the VM assets directory does not exist", as_int(condition::not_found)},
    {static_cast<int>(asset_errc::asset_missing), "a VM asset (kernel or initramfs) is missing", as_int(condition::not_found)},
    {static_cast<int>(asset_errc::checksum_missing), "the VM asset has no .sha256 sidecar", as_int(condition::bad_guest_image)},
    {static_cast<int>(asset_errc::checksum_malformed), "the VM asset's .sha256 sidecar is malformed", as_int(condition::bad_guest_image)},
    {static_cast<int>(asset_errc::asset_integrity), "the VM asset does not match its SHA-256 checksum", as_int(condition::bad_guest_image)},
};

constexpr error_row sandbox_rows[] = {
    {static_cast<int>(sandbox_errc::ready_timeout), "the guest agent did not become ready in time", as_int(condition::timed_out)},
    {static_cast<int>(sandbox_errc::agent_disconnected), "the guest agent's connection ended before its answer", as_int(condition::agent_failed)},
    {static_cast<int>(sandbox_errc::agent_protocol), "the guest agent broke the protocol", as_int(condition::agent_failed)},
    {static_cast<int>(sandbox_errc::agent_error), "the guest agent could not start the operation", as_int(condition::agent_failed)},
    {static_cast<int>(sandbox_errc::vm_stopped), "the sandbox's VM stopped during the operation", as_int(condition::vm_stopped)},
    {static_cast<int>(sandbox_errc::stdin_closed), "the command's stdin is closed", as_int(condition::invalid_state)},
    {static_cast<int>(sandbox_errc::unsupported_transport), "the requested agent transport is not available", as_int(condition::invalid_config)},
    {static_cast<int>(sandbox_errc::agent_timeout), "the guest agent did not answer within the host's deadline", as_int(condition::timed_out)},
    {static_cast<int>(sandbox_errc::stream_broken), "a cancelled stdin write left the exec stream hung up"},
    {static_cast<int>(sandbox_errc::internal_error), "unexpected internal error in mimobox"},
};

constexpr error_row guest_file_rows[] = {
    {static_cast<int>(guest_file_errc::not_found), "no such file or directory in the guest", as_int(condition::not_found)},
    {static_cast<int>(guest_file_errc::permission_denied), "permission denied in the guest", as_int(condition::permission_denied)},
    {static_cast<int>(guest_file_errc::io), "I/O error in the guest"},
    {static_cast<int>(guest_file_errc::out_of_space), "no space left in the guest"},
    {static_cast<int>(guest_file_errc::is_directory), "is a directory"},
    {static_cast<int>(guest_file_errc::not_a_directory), "a path component is not a directory"},
    {static_cast<int>(guest_file_errc::already_exists), "already exists in the guest"},
    {static_cast<int>(guest_file_errc::directory_not_empty), "directory not empty"},
    {static_cast<int>(guest_file_errc::name_too_long), "file name too long"},
    {static_cast<int>(guest_file_errc::symlink_loop), "too many levels of symbolic links"},
    {static_cast<int>(guest_file_errc::invalid_path), "invalid guest path"},
    {static_cast<int>(guest_file_errc::busy), "file busy in the guest"},
    {static_cast<int>(guest_file_errc::file_too_large), "file too large"},
    {static_cast<int>(guest_file_errc::not_a_regular_file), "not a regular file"},
};

constexpr error_row vsock_rows[] = {
    {static_cast<int>(vsock_errc::connection_refused), "the guest refused the vsock connection", as_int(condition::connection_failed)},
    {static_cast<int>(vsock_errc::connection_reset), "the guest reset the vsock connection", as_int(condition::connection_failed)},
    {static_cast<int>(vsock_errc::protocol_violation), "the guest violated the vsock protocol; connection reset", as_int(condition::connection_failed)},
    {static_cast<int>(vsock_errc::connection_closed), "the vsock connection is closed", as_int(condition::connection_failed)},
    {static_cast<int>(vsock_errc::link_broken), "the serial line carrying vsock lost packet framing; all connections reset", as_int(condition::connection_failed)},
};

constexpr error_row snapshot_rows[] = {
    {static_cast<int>(snapshot_errc::not_a_snapshot), "not a mimobox snapshot", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::unsupported_format_version), "snapshot format version not supported", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::truncated), "snapshot truncated", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::corrupt_state), "snapshot state is corrupt", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::corrupt_memory), "snapshot memory does not match its recorded hash", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::shape_mismatch), "snapshot is for another vCPU count or memory size", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::cpu_mismatch), "snapshot was taken on an incompatible CPU", as_int(condition::bad_snapshot)},
    {static_cast<int>(snapshot_errc::unsupported_vm), "this VM's devices cannot be snapshotted (vsock over the serial line)", as_int(condition::invalid_config)},
};

constexpr error_row restore_pool_rows[] = {
    {static_cast<int>(restore_pool_errc::shape_mismatch), "snapshot shape differs from the pool's shells", as_int(condition::bad_snapshot)},
    {static_cast<int>(restore_pool_errc::stopped), "restore pool stopped", as_int(condition::invalid_state)},
    {static_cast<int>(restore_pool_errc::exhausted), "restore pool exhausted: no shell came back in time", as_int(condition::timed_out)},
    {static_cast<int>(restore_pool_errc::invalid_config), "invalid restore_pool_config", as_int(condition::invalid_config)},
};

constexpr error_row pool_rows[] = {
    {static_cast<int>(pool_errc::exhausted), "vm pool exhausted: every sandbox is in use", as_int(condition::timed_out)},
    {static_cast<int>(pool_errc::stopped), "vm pool stopped", as_int(condition::invalid_state)},
    {static_cast<int>(pool_errc::acquire_timeout), "no pooled sandbox became free in time", as_int(condition::timed_out)},
    {static_cast<int>(pool_errc::unhealthy), "vm pool unhealthy: starting sandboxes keeps failing"},
    {static_cast<int>(pool_errc::invalid_config), "invalid vm_pool_config", as_int(condition::invalid_config)},
};

class condition_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.condition"; }
    std::string message(int ev) const override {
        switch (static_cast<condition>(ev)) {
        case condition::vm_stopped: return "the VM stopped";
        case condition::timed_out: return "timed out";
        case condition::not_found: return "not found";
        case condition::permission_denied: return "permission denied";
        case condition::invalid_state: return "not allowed in the current state";
        case condition::invalid_config: return "invalid configuration";
        case condition::bad_guest_image: return "unusable guest kernel or initramfs";
        case condition::host_unsupported: return "this host cannot run the VM";
        case condition::agent_failed: return "the guest agent failed";
        case condition::connection_failed: return "the vsock connection failed";
        case condition::bad_snapshot: return "unusable snapshot";
        case condition::out_of_host_resources: return "the host is out of file descriptors or memory";
        }
        return "unknown mimobox.condition";
    }
    bool equivalent(const boost::system::error_code& code, int cond) const noexcept override {
        if (common::condition_of(code) == cond) return true;
        // Codes from the standard categories that mean the same.
        namespace errc = boost::system::errc;
        switch (static_cast<condition>(cond)) {
        case condition::timed_out: return code == errc::timed_out;
        case condition::not_found: return code == errc::no_such_file_or_directory;
        case condition::permission_denied: return code == errc::permission_denied;
        case condition::out_of_host_resources:
            return code == errc::too_many_files_open || code == errc::too_many_files_open_in_system ||
                   code == errc::not_enough_memory;
        default: return false;
        }
    }
};

}  // namespace

const boost::system::error_category& microvm_category() noexcept {
    static const common::table_category instance("mimobox.microvm", microvm_rows);
    return instance;
}

const boost::system::error_category& lifecycle_category() noexcept {
    static const common::table_category instance("mimobox.lifecycle", lifecycle_rows);
    return instance;
}

const boost::system::error_category& asset_category() noexcept {
    static const common::table_category instance("mimobox.asset", asset_rows);
    return instance;
}

const boost::system::error_category& sandbox_category() noexcept {
    static const common::table_category instance("mimobox.sandbox", sandbox_rows);
    return instance;
}

const boost::system::error_category& guest_file_category() noexcept {
    static const common::table_category instance("mimobox.guest_file", guest_file_rows);
    return instance;
}

const boost::system::error_category& vsock_category() noexcept {
    static const common::table_category instance("mimobox.vsock", vsock_rows);
    return instance;
}

const boost::system::error_category& restore_pool_category() noexcept {
    static const common::table_category instance("mimobox.restore_pool", restore_pool_rows);
    return instance;
}

const boost::system::error_category& pool_category() noexcept {
    static const common::table_category instance("mimobox.pool", pool_rows);
    return instance;
}

const boost::system::error_category& snapshot_category() noexcept {
    static const common::table_category instance("mimobox.snapshot", snapshot_rows);
    return instance;
}

const boost::system::error_category& condition_category() noexcept {
    static const condition_category_impl instance;
    return instance;
}

// Guest and host are both x86-64 Linux, so errno values mean the same on both sides.
guest_file_errc guest_file_errc_from_errno(int guest_errno) noexcept {
    switch (guest_errno) {
    case ENOENT: return guest_file_errc::not_found;
    case EACCES:
    case EPERM:
    case EROFS: return guest_file_errc::permission_denied;
    case ENOSPC:
    case EDQUOT: return guest_file_errc::out_of_space;
    case EISDIR: return guest_file_errc::is_directory;
    case ENOTDIR: return guest_file_errc::not_a_directory;
    case EEXIST: return guest_file_errc::already_exists;
    case ENOTEMPTY: return guest_file_errc::directory_not_empty;
    case ENAMETOOLONG: return guest_file_errc::name_too_long;
    case ELOOP: return guest_file_errc::symlink_loop;
    case EINVAL: return guest_file_errc::invalid_path;
    case EBUSY:
    case ETXTBSY: return guest_file_errc::busy;
    case EFBIG: return guest_file_errc::file_too_large;
    case ENXIO: return guest_file_errc::not_a_regular_file;
    default: return guest_file_errc::io;
    }
}


}  // namespace mimobox::vm
