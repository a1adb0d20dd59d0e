// The guest-physical memory map the VMM builds (after Firecracker's, kvm-reference.md 2.2).
#pragma once

#include <cstdint>

namespace mimobox::boot::layout {

inline constexpr std::uint64_t gdt = 0x500;
inline constexpr std::uint64_t idt = 0x520;
inline constexpr std::uint64_t zero_page = 0x7000;
inline constexpr std::uint64_t boot_stack = 0x8ff0;
inline constexpr std::uint64_t pml4 = 0x9000;
inline constexpr std::uint64_t pdpt = 0xa000;
inline constexpr std::uint64_t pd = 0xb000;
inline constexpr std::uint64_t cmdline = 0x20000;
inline constexpr std::uint64_t cmdline_max = 0x10000;    // bytes reserved for the command line
inline constexpr std::uint64_t ebda_start = 0x9fc00;      // MP table lives here; e820-reserved
inline constexpr std::uint64_t high_memory = 0x100000;    // bzImage protected-mode code loads here
inline constexpr std::uint64_t mmio_gap_start = 0xd0000000;
inline constexpr std::uint64_t mmio_gap_end = 0x100000000;
inline constexpr std::uint64_t virtio_mmio_base = mmio_gap_start;  // device n at base + n * 0x1000
inline constexpr std::uint64_t ioapic = 0xfec00000;
inline constexpr std::uint64_t lapic = 0xfee00000;
inline constexpr std::uint64_t tss = 0xfffbd000;          // 3 pages, outside any memslot
inline constexpr std::uint64_t identity_map = 0xfffbc000;
inline constexpr std::uint64_t identity_mapped_bytes = 1ull << 30;  // boot page tables map 1 GiB

}  // namespace mimobox::boot::layout
