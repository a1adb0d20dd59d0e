// Errors of the VMM as a whole: platform, configuration and guest-image problems.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace mimobox::vm {

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

const boost::system::error_category& microvm_category() noexcept;

inline boost::system::error_code make_error_code(microvm_errc e) noexcept {
    return {static_cast<int>(e), microvm_category()};
}

}  // namespace mimobox::vm

template <>
struct boost::system::is_error_code_enum<mimobox::vm::microvm_errc> : std::true_type {};
