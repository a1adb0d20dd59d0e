#include "boot/cpu_setup.hpp"

#include "boot/layout.hpp"

#include <array>
#include <cstring>

namespace mimobox::boot {

namespace {

constexpr std::uint16_t code_selector = 0x10;  // __BOOT_CS in boot.rst
constexpr std::uint16_t data_selector = 0x18;  // __BOOT_DS
constexpr std::uint16_t tss_selector = 0x20;
constexpr std::array<std::uint64_t, 5> gdt_entries = {
    0, 0,
    0x00af9b000000ffff,  // 64-bit code: type 0xb, S, P, L, G
    0x00cf93000000ffff,  // data: type 3, S, P, DB, G
    0x008f8b000000ffff,  // busy 64-bit TSS
};

kvm_segment segment_from_descriptor(std::uint64_t d, std::uint16_t selector) {
    kvm_segment s{};
    s.base = static_cast<std::uint64_t>(((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24));
    std::uint32_t limit = static_cast<std::uint32_t>((d & 0xffff) | (((d >> 48) & 0xf) << 16));
    s.g = (d >> 55) & 1;
    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    s.selector = selector;
    s.type = (d >> 40) & 0xf;
    s.s = (d >> 44) & 1;
    s.dpl = (d >> 45) & 3;
    s.present = (d >> 47) & 1;
    s.avl = (d >> 52) & 1;
    s.l = (d >> 53) & 1;
    s.db = (d >> 54) & 1;
    return s;
}

constexpr std::uint64_t cr0_pe = 1, cr0_et = 0x10, cr0_pg = 0x80000000;
constexpr std::uint64_t cr4_pae = 0x20;
constexpr std::uint64_t efer_lme = 0x100, efer_lma = 0x400;
constexpr std::uint64_t pte_present_rw = 0x3, pde_huge = 0x80;

}  // namespace

boost::system::error_code write_boot_tables(const memory::guest_memory& mem) {
    using memory::guest_addr;
    if (auto ec = mem.write(guest_addr(layout::gdt), std::as_bytes(std::span(gdt_entries)))) return ec;
    if (auto ec = mem.write_obj(guest_addr(layout::idt), std::uint64_t{0})) return ec;
    if (auto ec = mem.write_obj(guest_addr(layout::pml4), layout::pdpt | pte_present_rw)) return ec;
    if (auto ec = mem.write_obj(guest_addr(layout::pdpt), layout::pd | pte_present_rw)) return ec;
    std::array<std::uint64_t, 512> pd{};
    for (std::uint64_t i = 0; i < pd.size(); ++i) pd[i] = (i << 21) | pte_present_rw | pde_huge;
    return mem.write(guest_addr(layout::pd), std::as_bytes(std::span(pd)));
}

boost::system::error_code setup_long_mode(kvm::vcpu& cpu, std::uint64_t entry) {
    auto sregs = cpu.get_sregs();
    if (!sregs) return sregs.error();
    auto code = segment_from_descriptor(gdt_entries[2], code_selector);
    auto data = segment_from_descriptor(gdt_entries[3], data_selector);
    auto tss = segment_from_descriptor(gdt_entries[4], tss_selector);
    sregs->cs = code;
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->tr = tss;
    sregs->gdt.base = layout::gdt;
    sregs->gdt.limit = static_cast<std::uint16_t>(sizeof(gdt_entries) - 1);
    sregs->idt.base = layout::idt;
    sregs->idt.limit = 7;
    sregs->cr3 = layout::pml4;
    sregs->cr4 |= cr4_pae;
    sregs->cr0 |= cr0_pe | cr0_et | cr0_pg;
    sregs->efer |= efer_lme | efer_lma;
    if (auto ec = cpu.set_sregs(*sregs)) return ec;

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (auto ec = cpu.set_fpu(fpu)) return ec;

    kvm_regs regs{};
    regs.rflags = 0x2;
    regs.rip = entry;
    regs.rsp = regs.rbp = layout::boot_stack;
    regs.rsi = layout::zero_page;
    return cpu.set_regs(regs);
}

boost::system::error_code setup_msrs(kvm::vcpu& cpu) {
    const std::array<kvm_msr_entry, 11> msrs = {{
        {0x174, 0, 0},         // SYSENTER_CS
        {0x175, 0, 0},         // SYSENTER_ESP
        {0x176, 0, 0},         // SYSENTER_EIP
        {0xc0000081, 0, 0},    // STAR
        {0xc0000082, 0, 0},    // LSTAR
        {0xc0000083, 0, 0},    // CSTAR
        {0xc0000084, 0, 0},    // SYSCALL_MASK
        {0xc0000102, 0, 0},    // KERNEL_GS_BASE
        {0x10, 0, 0},          // TSC
        {0x1a0, 0, 1},         // MISC_ENABLE: fast strings
        {0x2ff, 0, (1u << 11) | 6},  // MTRRdefType: enabled, write-back
    }};
    return cpu.set_msrs(msrs);
}

boost::system::error_code setup_lapic_lint(kvm::vcpu& cpu) {
    auto lapic = cpu.get_lapic();
    if (!lapic) return lapic.error();
    auto patch = [&](std::size_t off, std::uint32_t mode) {
        std::uint32_t v;
        std::memcpy(&v, lapic->regs + off, 4);
        v = (v & ~0x700u) | (mode << 8);
        std::memcpy(lapic->regs + off, &v, 4);
    };
    patch(0x350, 7);  // LVT LINT0: ExtINT
    patch(0x360, 4);  // LVT LINT1: NMI
    return cpu.set_lapic(*lapic);
}

}  // namespace mimobox::boot
