// RAII handle on a KVM vCPU: its fd and its mmapped struct kvm_run.
#pragma once

#include "kvm/ioctl.hpp"
#include "kvm/unique_fd.hpp"

#include "kvm/kvm_abi.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace mimobox::kvm {

class vcpu {
public:
    vcpu(unique_fd fd, kvm_run* run, std::size_t run_size, std::uint32_t id) noexcept;
    vcpu(vcpu&& other) noexcept;
    vcpu& operator=(vcpu&& other) noexcept;
    vcpu(const vcpu&) = delete;
    vcpu& operator=(const vcpu&) = delete;
    ~vcpu();

    int fd() const noexcept { return fd_.get(); }
    std::uint32_t id() const noexcept { return id_; }
    /// Shared with the kernel; valid while this object lives. Read it only between run() calls.
    kvm_run& run_state() noexcept { return *run_; }
    std::size_t run_size() const noexcept { return run_size_; }

    /// KVM_RUN once. EINTR means a kick (immediate_exit or a signal) arrived.
    error_code run() noexcept;

    result<kvm_regs> get_regs() const noexcept;
    error_code set_regs(const kvm_regs& regs) noexcept;
    result<kvm_sregs> get_sregs() const noexcept;
    error_code set_sregs(const kvm_sregs& sregs) noexcept;
    result<kvm_fpu> get_fpu() const noexcept;
    error_code set_fpu(const kvm_fpu& fpu) noexcept;
    error_code set_cpuid(std::span<const kvm_cpuid_entry2> entries);
    result<kvm_lapic_state> get_lapic() const noexcept;
    error_code set_lapic(const kvm_lapic_state& lapic) noexcept;
    result<kvm_mp_state> get_mp_state() const noexcept;
    error_code set_mp_state(const kvm_mp_state& state) noexcept;
    /// KVM_SET_MSRS; a short count (an MSR the kernel refused) is reported as EINVAL.
    error_code set_msrs(std::span<const kvm_msr_entry> entries);
    /// KVM_GET_MSRS into `entries` (indices filled in by the caller); returns how many were read.
    result<std::size_t> get_msrs(std::span<kvm_msr_entry> entries) const;

    // ---- the rest of a vCPU's state, for snapshots (kvm-reference.md §6 gives the order)
    result<kvm_xsave> get_xsave() const noexcept;
    error_code set_xsave(const kvm_xsave& xsave) noexcept;
    result<kvm_xcrs> get_xcrs() const noexcept;
    error_code set_xcrs(const kvm_xcrs& xcrs) noexcept;
    result<kvm_debugregs> get_debugregs() const noexcept;
    error_code set_debugregs(const kvm_debugregs& regs) noexcept;
    result<kvm_vcpu_events> get_vcpu_events() const noexcept;
    error_code set_vcpu_events(const kvm_vcpu_events& events) noexcept;
    /// KVM_GET_TSC_KHZ: the guest TSC's frequency.
    result<std::uint32_t> get_tsc_khz() const noexcept;
    error_code set_tsc_khz(std::uint32_t khz) noexcept;
    /// KVM_KVMCLOCK_CTRL: tells the guest's kvmclock the vCPU was paused (no soft lockup
    /// report for the time it was stopped). EINVAL when the guest has no kvmclock.
    error_code kvmclock_ctrl() noexcept;

private:
    unique_fd fd_;
    kvm_run* run_ = nullptr;
    std::size_t run_size_ = 0;
    std::uint32_t id_ = 0;
};

}  // namespace mimobox::kvm
