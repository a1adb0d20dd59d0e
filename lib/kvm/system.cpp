#include "kvm/system.hpp"

#include "kvm/vm.hpp"

#include <fcntl.h>


namespace mimobox::kvm {

result<system> system::open(const char* path) noexcept {
    unique_fd fd(::open(path, O_RDWR | O_CLOEXEC));
    if (!fd) return last_errno();
    auto version = checked_ioctl(fd.get(), KVM_GET_API_VERSION, 0);
    if (!version) return version.error();
    if (*version != KVM_API_VERSION) return error_code(EPROTO, boost::system::system_category());
    return system(std::move(fd));
}

int system::check_extension(long capability) const noexcept {
    auto r = checked_ioctl(fd(), KVM_CHECK_EXTENSION, capability);
    return r ? *r : 0;
}

result<int> system::vcpu_mmap_size() const noexcept { return checked_ioctl(fd(), KVM_GET_VCPU_MMAP_SIZE, 0); }

result<std::vector<kvm_cpuid_entry2>> system::supported_cpuid() const {
    for (std::size_t n = 64; n <= 4096; n *= 2) {
        // kvm_cpuid2 ends in a flexible array: header + n entries, in u64 storage for alignment.
        std::vector<std::uint64_t> buf((sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2)) / 8 + 1);
        auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
        cpuid->nent = static_cast<std::uint32_t>(n);
        auto r = checked_ioctl(fd(), KVM_GET_SUPPORTED_CPUID, cpuid);
        if (!r) {
            if (r.error().value() == E2BIG) continue;
            return r.error();
        }
        return std::vector<kvm_cpuid_entry2>(cpuid->entries, cpuid->entries + cpuid->nent);
    }
    return error_code(E2BIG, boost::system::system_category());
}

result<std::vector<std::uint32_t>> system::msr_index_list() const {
    kvm_msr_list probe{};
    (void)::ioctl(fd(), KVM_GET_MSR_INDEX_LIST, &probe);  // E2BIG, with nmsrs set to the count
    std::vector<std::uint32_t> buf(1 + probe.nmsrs);
    auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
    list->nmsrs = probe.nmsrs;
    auto r = checked_ioctl(fd(), KVM_GET_MSR_INDEX_LIST, list);
    if (!r) return r.error();
    return std::vector<std::uint32_t>(list->indices, list->indices + list->nmsrs);
}

result<vm> system::create_vm() const noexcept {
    auto r = checked_ioctl(fd(), KVM_CREATE_VM, 0);
    if (!r) return r.error();
    return vm(unique_fd(*r));
}

}  // namespace mimobox::kvm
