#include "mimobox/vm/platform.hpp"

#include "api/platform_verdict.hpp"

#include "kvm/system.hpp"
#include "kvm/vcpu.hpp"
#include "kvm/vm.hpp"
#include "memory/mapping.hpp"
#include "mimobox/vm/error.hpp"

#include <filesystem>

namespace mimobox::vm {

boost::system::error_code check_kvm_usable(std::string* detail) {
    auto fail = [&](const char* step, const boost::system::error_code& cause) {
        if (detail) *detail = std::string(step) + ": " + cause.message();
        return make_error_code(microvm_errc::unsupported_platform);
    };
    auto sys = kvm::system::open();
    if (!sys) return fail("open /dev/kvm", sys.error());
    auto mmap_size = sys->vcpu_mmap_size();
    if (!mmap_size) return fail("KVM_GET_VCPU_MMAP_SIZE", mmap_size.error());
    auto vm = sys->create_vm();
    if (!vm) return fail("KVM_CREATE_VM", vm.error());
    auto page = memory::mapping::anonymous(4096);
    if (!page) return fail("mmap", page.error());
    page->data()[0] = std::byte{0xf4};  // hlt
    if (auto ec = vm->set_user_memory_region(0, 0, page->size(), page->data())) return fail("memory region", ec);
    auto cpu = vm->create_vcpu(0, *mmap_size);
    if (!cpu) return fail("KVM_CREATE_VCPU", cpu.error());
    auto sregs = cpu->get_sregs();
    if (!sregs) return fail("KVM_GET_SREGS", sregs.error());
    sregs->cs.base = 0;
    sregs->cs.selector = 0;
    if (auto ec = cpu->set_sregs(*sregs)) return fail("KVM_SET_SREGS", ec);
    kvm_regs regs{};
    regs.rip = 0;
    regs.rflags = 2;
    if (auto ec = cpu->set_regs(regs)) return fail("KVM_SET_REGS", ec);
    if (auto ec = cpu->run()) return fail("KVM_RUN", ec);
    if (cpu->run_state().exit_reason != KVM_EXIT_HLT) {
        if (detail) *detail = "KVM_RUN exited with reason " + std::to_string(cpu->run_state().exit_reason);
        return make_error_code(microvm_errc::unsupported_platform);
    }
    // kvm-pvm (software virtualization by shadow paging, found on hosts without VMX/SVM) runs
    // the probe above, but a Linux guest on it crawls (tens of seconds to reach the slab
    // allocator) and then stops with KVM_EXIT_INTERNAL_ERROR on cmpxchg16b and XSAVE emulation.
    std::error_code fs_ec;
    if (std::filesystem::exists("/sys/module/kvm_pvm", fs_ec)) {
        if (detail) *detail = "host KVM is kvm-pvm (no hardware virtualization); Linux guests do not boot on it";
        return make_error_code(microvm_errc::unsupported_platform);
    }
    return {};
}

}  // namespace mimobox::vm

namespace mimobox::vm::detail {

boost::system::error_code cached_kvm_verdict() {
    static const boost::system::error_code verdict = check_kvm_usable();
    return verdict;
}

}  // namespace mimobox::vm::detail
