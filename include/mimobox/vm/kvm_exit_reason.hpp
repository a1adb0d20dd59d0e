// Why a VM stopped, with the evidence.
#pragma once

#include <boost/system/error_code.hpp>

#include <string>
#include <string_view>

namespace mimobox::vm {

enum class kvm_exit_reason {
    host_stop,        ///< async_stop, or the backend was destroyed
    guest_reboot,     ///< triple fault (reboot=t: also how a guest panic ends) or i8042 reset
    guest_shutdown,   ///< KVM_EXIT_SYSTEM_EVENT shutdown
    guest_halt,       ///< HLT reached userspace (only without the in-kernel irqchip)
    internal_error,   ///< KVM_EXIT_INTERNAL_ERROR, FAIL_ENTRY or an exit the VMM does not know
    vcpu_error,       ///< KVM_RUN itself failed
};

constexpr std::string_view to_string(kvm_exit_reason r) noexcept {
    switch (r) {
    case kvm_exit_reason::host_stop: return "host_stop";
    case kvm_exit_reason::guest_reboot: return "guest_reboot";
    case kvm_exit_reason::guest_shutdown: return "guest_shutdown";
    case kvm_exit_reason::guest_halt: return "guest_halt";
    case kvm_exit_reason::internal_error: return "internal_error";
    case kvm_exit_reason::vcpu_error: return "vcpu_error";
    }
    return "unknown";
}

struct vm_stop_info {
    kvm_exit_reason reason = kvm_exit_reason::host_stop;
    std::string detail;        ///< e.g. the KVM exit code
    std::string console_tail;  ///< last lines of the serial console when it stopped
    /// guest_reboot: the console's "Kernel panic" line, if it has one. A hint, not evidence:
    /// anything in the guest can print that text (so it never changes `reason`).
    std::string console_panic_line;
};

}  // namespace mimobox::vm
