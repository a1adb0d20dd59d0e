// x86-64 vCPU boot state: GDT/IDT and identity page tables in guest memory, long-mode
// registers for the boot CPU, boot MSRs and LAPIC LINT pins for every CPU.
#pragma once

#include "kvm/vcpu.hpp"
#include "memory/guest_memory.hpp"

namespace mimobox::boot {

/// GDT at layout::gdt, empty IDT at layout::idt, PML4/PDPT/PD identity-mapping the first GiB
/// with 2 MiB pages.
boost::system::error_code write_boot_tables(const memory::guest_memory& mem);

/// Long mode, flat segments, paging on, RIP = entry, RSI = zero page (the 64-bit boot protocol).
boost::system::error_code setup_long_mode(kvm::vcpu& cpu, std::uint64_t entry);

/// Boot MSRs (SYSENTER/SYSCALL zeroed, fast strings, write-back MTRR default). Every vCPU.
boost::system::error_code setup_msrs(kvm::vcpu& cpu);

/// LINT0 = ExtINT, LINT1 = NMI. Every vCPU; needs the in-kernel irqchip.
boost::system::error_code setup_lapic_lint(kvm::vcpu& cpu);

}  // namespace mimobox::boot
