// The binary body of a snapshot, decoded: every vCPU's KVM state, the VM-wide KVM state and the
// devices' own bytes (which each device checks as it restores itself). Sans-io: encode and
// decode need no KVM, so the loader is fuzzed (fuzz_snapshot_state) and unit-tested alone.
//
//   'MACH' vcpu_count, memory_bytes, vsock link, vsock CID
//   'DEVS' COM1, i8042, vsock link (each device's own layout)
//   'VCPU' x vcpu_count: CPUID, MP state, regs, sregs, XSAVE, XCRS, debug regs, LAPIC,
//          TSC kHz, MSRs (index, value), vCPU events (kvm-reference.md §6's capture order)
//   'VMST' PIT2, kvmclock, IRQ chips 0 (master PIC), 1 (slave PIC), 2 (IOAPIC)
#pragma once

#include "kvm/kvm_abi.hpp"
#include "snapshot/state_codec.hpp"

#include <cstring>

#include <array>
#include <cstdint>
#include <vector>

namespace mimobox::snapshot {

/// Largest counts a snapshot may carry: above what KVM reports on any host we know.
inline constexpr std::uint32_t max_vcpus = 256;
inline constexpr std::uint32_t max_cpuid_entries = 256;
inline constexpr std::uint32_t max_msrs = 1024;

struct vcpu_state {
    vcpu_state() = default;
    std::vector<kvm_cpuid_entry2> cpuid;
    kvm_mp_state mp_state{};
    kvm_regs regs{};
    kvm_sregs sregs{};
    std::array<std::uint32_t, 1024> xsave{};  ///< kvm_xsave's region (its flexible tail is unused: no XSAVE2)
    kvm_xcrs xcrs{};
    kvm_debugregs debugregs{};
    kvm_lapic_state lapic{};
    std::uint32_t tsc_khz = 0;
    std::vector<kvm_msr_entry> msrs;  ///< TSC_DEADLINE (0x6e0), if present, is last
    kvm_vcpu_events events{};
};

struct vm_state {
    vm_state() = default;
    kvm_pit_state2 pit{};
    kvm_clock_data clock{};
    std::array<kvm_irqchip, 3> irqchips{};
};

struct machine_state {
    machine_state() = default;
    std::uint32_t vcpu_count = 0;
    std::uint64_t memory_bytes = 0;
    std::uint8_t vsock_link = 0;  ///< vm::vsock_link's value
    std::uint64_t vsock_cid = 0;
    std::vector<std::uint8_t> devices;  ///< the 'DEVS' section's bytes
    std::vector<vcpu_state> vcpus;
    vm_state vm;
};

std::vector<std::uint8_t> encode_machine_state(const machine_state& state);
/// corrupt_state for anything malformed: wrong tags, a count past its limit or past the bytes
/// left, a vCPU count that disagrees with the vCPU sections, trailing bytes.
boost::system::result<machine_state> decode_machine_state(std::span<const std::uint8_t> body);

/// MSRs worth saving (kvm-reference.md §6, after Firecracker): the rest of what
/// KVM_GET_MSR_INDEX_LIST reports is either read-only, derived, or not restorable.
bool msr_is_saveable(std::uint32_t index) noexcept;
inline constexpr std::uint32_t msr_tsc_deadline = 0x6e0;

}  // namespace mimobox::snapshot
