#include "kvm/vcpu.hpp"

#include <sys/mman.h>

#include <cstring>
#include <utility>

namespace mimobox::kvm {

namespace {
error_code as_error(result<int> r) noexcept { return r ? error_code{} : r.error(); }

template <class T>
result<T> get_state(int fd, unsigned long request) noexcept {
    T value{};
    auto r = checked_ioctl(fd, request, &value);
    if (!r) return r.error();
    return value;
}
}  // namespace

vcpu::vcpu(unique_fd fd, kvm_run* run, std::size_t run_size, std::uint32_t id) noexcept
    : fd_(std::move(fd)), run_(run), run_size_(run_size), id_(id) {}

vcpu::vcpu(vcpu&& other) noexcept
    : fd_(std::move(other.fd_)),
      run_(std::exchange(other.run_, nullptr)),
      run_size_(std::exchange(other.run_size_, 0)),
      id_(other.id_) {}

vcpu& vcpu::operator=(vcpu&& other) noexcept {
    if (this != &other) {
        if (run_) ::munmap(run_, run_size_);
        fd_ = std::move(other.fd_);
        run_ = std::exchange(other.run_, nullptr);
        run_size_ = std::exchange(other.run_size_, 0);
        id_ = other.id_;
    }
    return *this;
}

vcpu::~vcpu() {
    if (run_) ::munmap(run_, run_size_);
}

error_code vcpu::run() noexcept { return as_error(checked_ioctl(fd(), KVM_RUN, 0)); }

result<kvm_regs> vcpu::get_regs() const noexcept { return get_state<kvm_regs>(fd(), KVM_GET_REGS); }
error_code vcpu::set_regs(const kvm_regs& regs) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_REGS, &regs)); }
result<kvm_sregs> vcpu::get_sregs() const noexcept { return get_state<kvm_sregs>(fd(), KVM_GET_SREGS); }
error_code vcpu::set_sregs(const kvm_sregs& sregs) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_SREGS, &sregs));
}
result<kvm_fpu> vcpu::get_fpu() const noexcept { return get_state<kvm_fpu>(fd(), KVM_GET_FPU); }
error_code vcpu::set_fpu(const kvm_fpu& fpu) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_FPU, &fpu)); }
result<kvm_lapic_state> vcpu::get_lapic() const noexcept { return get_state<kvm_lapic_state>(fd(), KVM_GET_LAPIC); }
error_code vcpu::set_lapic(const kvm_lapic_state& lapic) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_LAPIC, &lapic));
}
result<kvm_mp_state> vcpu::get_mp_state() const noexcept { return get_state<kvm_mp_state>(fd(), KVM_GET_MP_STATE); }
error_code vcpu::set_mp_state(const kvm_mp_state& state) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_MP_STATE, &state));
}

error_code vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
    // kvm_cpuid2 ends in a flexible array; u64 storage keeps it aligned.
    std::vector<std::uint64_t> buf((sizeof(kvm_cpuid2) + entries.size_bytes()) / 8 + 1);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = static_cast<std::uint32_t>(entries.size());
    std::memcpy(cpuid->entries, entries.data(), entries.size_bytes());
    return as_error(checked_ioctl(fd(), KVM_SET_CPUID2, cpuid));
}

namespace {
std::vector<std::uint64_t> msr_buffer(std::span<const kvm_msr_entry> entries) {
    std::vector<std::uint64_t> buf((sizeof(kvm_msrs) + entries.size_bytes()) / 8 + 1);
    auto* msrs = reinterpret_cast<kvm_msrs*>(buf.data());
    msrs->nmsrs = static_cast<std::uint32_t>(entries.size());
    std::memcpy(msrs->entries, entries.data(), entries.size_bytes());
    return buf;
}
}  // namespace

error_code vcpu::set_msrs(std::span<const kvm_msr_entry> entries) {
    auto buf = msr_buffer(entries);
    auto r = checked_ioctl(fd(), KVM_SET_MSRS, buf.data());
    if (!r) return r.error();
    if (static_cast<std::size_t>(*r) != entries.size()) return error_code(EINVAL, boost::system::system_category());
    return {};
}

result<kvm_xsave> vcpu::get_xsave() const noexcept { return get_state<kvm_xsave>(fd(), KVM_GET_XSAVE); }
error_code vcpu::set_xsave(const kvm_xsave& xsave) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_XSAVE, &xsave)); }
result<kvm_xcrs> vcpu::get_xcrs() const noexcept { return get_state<kvm_xcrs>(fd(), KVM_GET_XCRS); }
error_code vcpu::set_xcrs(const kvm_xcrs& xcrs) noexcept { return as_error(checked_ioctl(fd(), KVM_SET_XCRS, &xcrs)); }
result<kvm_debugregs> vcpu::get_debugregs() const noexcept { return get_state<kvm_debugregs>(fd(), KVM_GET_DEBUGREGS); }
error_code vcpu::set_debugregs(const kvm_debugregs& regs) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_DEBUGREGS, &regs));
}
result<kvm_vcpu_events> vcpu::get_vcpu_events() const noexcept { return get_state<kvm_vcpu_events>(fd(), KVM_GET_VCPU_EVENTS); }
error_code vcpu::set_vcpu_events(const kvm_vcpu_events& events) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_VCPU_EVENTS, &events));
}
result<std::uint32_t> vcpu::get_tsc_khz() const noexcept {
    auto r = checked_ioctl(fd(), KVM_GET_TSC_KHZ, 0);
    if (!r) return r.error();
    return static_cast<std::uint32_t>(*r);
}
error_code vcpu::set_tsc_khz(std::uint32_t khz) noexcept {
    return as_error(checked_ioctl(fd(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)));
}
error_code vcpu::kvmclock_ctrl() noexcept { return as_error(checked_ioctl(fd(), KVM_KVMCLOCK_CTRL, 0)); }

result<std::size_t> vcpu::get_msrs(std::span<kvm_msr_entry> entries) const {
    auto buf = msr_buffer(entries);
    auto r = checked_ioctl(fd(), KVM_GET_MSRS, buf.data());
    if (!r) return r.error();
    auto* msrs = reinterpret_cast<kvm_msrs*>(buf.data());
    std::memcpy(entries.data(), msrs->entries, entries.size_bytes());
    return static_cast<std::size_t>(*r);
}

}  // namespace mimobox::kvm
