// Intel MP table: how a guest without ACPI finds its CPUs, IOAPIC and interrupt routing.
#pragma once

#include "memory/guest_memory.hpp"

namespace mimobox::boot {

/// Writes the floating pointer and configuration table at layout::ebda_start for `vcpu_count`
/// CPUs (APIC ids 0..n-1), one ISA bus, the IOAPIC (id n+1) with 24 identity-routed pins, ExtINT
/// to LINT0 and NMI to LINT1.
boost::system::error_code write_mptable(const memory::guest_memory& mem, unsigned vcpu_count);

/// Bytes the table takes for `vcpu_count` CPUs (for tests and layout checks).
std::size_t mptable_size(unsigned vcpu_count) noexcept;

}  // namespace mimobox::boot
