#include "boot/cpuid.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>

namespace mimobox::boot {

namespace {
constexpr std::uint32_t bit(unsigned n) { return 1u << n; }
void set_bits(std::uint32_t& reg, unsigned lo, unsigned hi, std::uint32_t value) {
    std::uint32_t mask = (hi - lo == 31) ? ~0u : ((1u << (hi - lo + 1)) - 1) << lo;
    reg = (reg & ~mask) | ((value << lo) & mask);
}
}  // namespace

std::vector<kvm_cpuid_entry2> normalize_cpuid(std::span<const kvm_cpuid_entry2> supported, unsigned vcpu_index,
                                              unsigned vcpu_count) {
    std::vector<kvm_cpuid_entry2> out(supported.begin(), supported.end());
    const std::uint32_t logical = std::bit_ceil(std::max(vcpu_count, 1u));
    for (auto& e : out) {
        switch (e.function) {
        case 0x1:
            set_bits(e.ebx, 24, 31, vcpu_index);  // initial APIC id
            set_bits(e.ebx, 16, 23, logical);     // logical processors per package
            set_bits(e.ebx, 8, 15, 8);            // CLFLUSH line size in 8-byte units
            e.ecx |= bit(31);                     // running under a hypervisor
            e.ecx |= bit(24);                     // TSC-deadline timer (in-kernel LAPIC emulates it)
            if (vcpu_count > 1) e.edx |= bit(28); else e.edx &= ~bit(28);  // HTT
            break;
        case 0x4:
            // Deterministic cache parameters: one core per vCPU, no SMT siblings.
            set_bits(e.eax, 26, 31, vcpu_count - 1);
            set_bits(e.eax, 14, 25, 0);
            break;
        case 0x6:
            e.ecx &= ~bit(3);  // no energy-performance bias MSR
            break;
        case 0xa:
            e.eax = e.ebx = e.ecx = e.edx = 0;  // no architectural PMU
            break;
        case 0xb:
        case 0x1f:
            // Extended topology: level 0 = SMT (1 thread per core), level 1 = core (all vCPUs).
            e.flags |= KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
            e.edx = vcpu_index;
            if (e.index == 0) {
                e.eax = 0;
                e.ebx = 1;
                e.ecx = (1u << 8) | e.index;
            } else if (e.index == 1) {
                e.eax = static_cast<std::uint32_t>(std::countr_zero(logical));
                e.ebx = vcpu_count;
                e.ecx = (2u << 8) | e.index;
            } else {
                e.eax = e.ebx = 0;
                e.ecx = e.index;
            }
            break;
        default:
            break;
        }
    }
    return out;
}

}  // namespace mimobox::boot
