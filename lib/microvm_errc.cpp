#include "mimobox/vm/microvm_errc.hpp"

namespace mimobox::vm {

namespace {
class microvm_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mimobox.microvm"; }
    std::string message(int ev) const override {
        switch (static_cast<microvm_errc>(ev)) {
        case microvm_errc::unsupported_platform: return "KVM is not usable on this host";
        case microvm_errc::kvm_api_mismatch: return "unexpected KVM API version";
        case microvm_errc::missing_kvm_capability: return "a required KVM capability is missing";
        case microvm_errc::zero_vcpus: return "vcpu_count must be at least 1";
        case microvm_errc::too_many_vcpus: return "vcpu_count exceeds what KVM or the VMM allows";
        case microvm_errc::memory_too_small: return "guest memory is too small";
        case microvm_errc::memory_too_large: return "guest memory exceeds the VMM's limit";
        case microvm_errc::kernel_not_found: return "guest kernel file not found or unreadable";
        case microvm_errc::initramfs_not_found: return "initramfs file not found or unreadable";
        case microvm_errc::cmdline_too_long: return "kernel command line exceeds the kernel's limit";
        case microvm_errc::cmdline_invalid: return "kernel command line argument contains a control character";
        case microvm_errc::invalid_vsock_cid: return "vsock_cid must be at least 3 and not 0xffffffff";
        case microvm_errc::not_a_kernel: return "file is neither a bzImage nor an ELF kernel";
        case microvm_errc::truncated_kernel: return "kernel image is truncated";
        case microvm_errc::boot_protocol_too_old: return "bzImage boot protocol is older than 2.12 or lacks a 64-bit entry";
        case microvm_errc::unsupported_elf: return "ELF kernel is not a loadable x86-64 image";
        case microvm_errc::kernel_does_not_fit: return "kernel does not fit in guest memory";
        case microvm_errc::initramfs_does_not_fit: return "initramfs does not fit below the kernel's initrd limit";
        case microvm_errc::invalid_vsock_link: return "microvm_config::vsock names no known vsock link";
        case microvm_errc::kick_signal_in_use: return "the vCPU kick signal already has a handler of the application's";
        case microvm_errc::invalid_kick_signal: return "the vCPU kick signal must be a real-time signal, chosen before any VM starts";
        }
        return "unknown mimobox.microvm error";
    }
};
}  // namespace

const boost::system::error_category& microvm_category() noexcept {
    static const microvm_category_impl instance;
    return instance;
}

}  // namespace mimobox::vm
