// CPUID as each vCPU should see it: KVM's supported set with topology, APIC ids and the
// hypervisor bits made consistent (kvm-reference.md 1.2).
#pragma once

#include "kvm/kvm_abi.hpp"

#include <span>
#include <vector>

namespace mimobox::boot {

std::vector<kvm_cpuid_entry2> normalize_cpuid(std::span<const kvm_cpuid_entry2> supported, unsigned vcpu_index,
                                              unsigned vcpu_count);

}  // namespace mimobox::boot
