// RAII handle on /dev/kvm: the root of the system -> vm -> vcpu chain. No policy here.
#pragma once

#include "kvm/ioctl.hpp"
#include "kvm/unique_fd.hpp"

#include "kvm/kvm_abi.hpp"

#include <vector>

namespace mimobox::kvm {

class vm;

class system {
public:
    /// Opens the device and checks KVM_GET_API_VERSION == 12 (else EPROTO).
    static result<system> open(const char* path = "/dev/kvm") noexcept;

    int fd() const noexcept { return fd_.get(); }
    /// KVM_CHECK_EXTENSION: 0 when absent, else the capability's value.
    int check_extension(long capability) const noexcept;
    result<int> vcpu_mmap_size() const noexcept;
    /// KVM_GET_SUPPORTED_CPUID, growing the buffer until the kernel stops answering E2BIG.
    result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
    result<std::vector<std::uint32_t>> msr_index_list() const;
    result<vm> create_vm() const noexcept;

private:
    explicit system(unique_fd fd) noexcept : fd_(std::move(fd)) {}
    unique_fd fd_;
};

}  // namespace mimobox::kvm
