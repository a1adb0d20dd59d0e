#include "vmm/vcpu_exit.hpp"

#include <algorithm>

namespace mimobox::vmm {

vcpu_exit decode_exit(const boost::system::error_code& run_result, kvm_run& run, std::size_t run_size) {
    using vm::kvm_exit_reason;
    if (run_result) {
        if (run_result.value() == EINTR || run_result.value() == EAGAIN) return kicked_exit{};
        return fatal_exit{kvm_exit_reason::vcpu_error, "KVM_RUN: " + run_result.message()};
    }
    switch (run.exit_reason) {
    case KVM_EXIT_IO: {
        std::uint64_t bytes = std::uint64_t(run.io.size) * run.io.count;
        if (run.io.data_offset > run_size || bytes > run_size - run.io.data_offset || run.io.size == 0)
            return fatal_exit{kvm_exit_reason::internal_error, "KVM_EXIT_IO data outside kvm_run"};
        // Safe: checked above to lie inside the vCPU's kvm_run mapping.
        auto* base = reinterpret_cast<std::uint8_t*>(&run) + run.io.data_offset;
        return io_exit{run.io.port, run.io.direction == KVM_EXIT_IO_OUT, run.io.size,
                       std::span<std::uint8_t>(base, static_cast<std::size_t>(bytes))};
    }
    case KVM_EXIT_MMIO: {
        std::size_t len = std::min<std::size_t>(run.mmio.len, sizeof run.mmio.data);
        return mmio_exit{run.mmio.phys_addr, run.mmio.is_write != 0, std::span<std::uint8_t>(run.mmio.data, len)};
    }
    case KVM_EXIT_SHUTDOWN: return shutdown_exit{};
    case KVM_EXIT_SYSTEM_EVENT: return system_event_exit{run.system_event.type};
    case KVM_EXIT_HLT: return halt_exit{};
    case KVM_EXIT_INTR: return kicked_exit{};
    case KVM_EXIT_FAIL_ENTRY:
        return fatal_exit{kvm_exit_reason::internal_error,
                          "KVM_EXIT_FAIL_ENTRY hardware reason " +
                              std::to_string(run.fail_entry.hardware_entry_failure_reason)};
    case KVM_EXIT_INTERNAL_ERROR:
        return fatal_exit{kvm_exit_reason::internal_error,
                          "KVM_EXIT_INTERNAL_ERROR suberror " + std::to_string(run.internal.suberror)};
    default:
        return fatal_exit{kvm_exit_reason::internal_error, "unhandled KVM exit " + std::to_string(run.exit_reason)};
    }
}

}  // namespace mimobox::vmm
