#include "snapshot/machine_state.hpp"

#include <algorithm>

namespace mimobox::snapshot {

namespace {

enum tag : std::uint32_t {
    tag_machine = 0x4843414d,  // "MACH"
    tag_devices = 0x53564544,  // "DEVS"
    tag_vcpu = 0x55504356,     // "VCPU"
    tag_vm = 0x54534d56,       // "VMST"
};

}  // namespace

bool msr_is_saveable(std::uint32_t i) noexcept {
    constexpr std::uint32_t singles[] = {0x10, 0x1b, 0x3a, 0x3b, 0x48, 0x1a0, 0x6e0, 0xda0};
    if (std::find(std::begin(singles), std::end(singles), i) != std::end(singles)) return true;
    return (i >= 0x174 && i <= 0x176) ||               // SYSENTER
           (i >= 0x200 && i <= 0x2ff) ||               // MTRRs, PAT
           (i >= 0x800 && i <= 0xbff) ||               // x2APIC
           (i >= 0xc0000080 && i <= 0xc0000084) ||     // EFER, STAR, LSTAR, CSTAR, SFMASK
           (i >= 0xc0000100 && i <= 0xc0000103) ||     // FS/GS/KERNEL_GS base, TSC_AUX
           (i >= 0x4b564d00 && i <= 0x4b564dff);       // KVM's paravirtual MSRs (kvmclock, steal time)
}

std::vector<std::uint8_t> encode_machine_state(const machine_state& s) {
    state_writer w;
    w.begin_section(tag_machine);
    w.u32(s.vcpu_count);
    w.u64(s.memory_bytes);
    w.u8(s.vsock_link);
    w.u64(s.vsock_cid);
    w.end_section();
    w.begin_section(tag_devices);
    w.bytes(s.devices);
    w.end_section();
    for (const auto& v : s.vcpus) {
        w.begin_section(tag_vcpu);
        w.u32(static_cast<std::uint32_t>(v.cpuid.size()));
        for (const auto& e : v.cpuid) w.raw(e);
        w.raw(v.mp_state);
        w.raw(v.regs);
        w.raw(v.sregs);
        w.raw(v.xsave);
        w.raw(v.xcrs);
        w.raw(v.debugregs);
        w.raw(v.lapic);
        w.u32(v.tsc_khz);
        w.u32(static_cast<std::uint32_t>(v.msrs.size()));
        for (const auto& m : v.msrs) {
            w.u32(m.index);
            w.u64(m.data);
        }
        w.raw(v.events);
        w.end_section();
    }
    w.begin_section(tag_vm);
    w.raw(s.vm.pit);
    w.raw(s.vm.clock);
    for (const auto& c : s.vm.irqchips) w.raw(c);
    w.end_section();
    return w.take();
}

boost::system::result<machine_state> decode_machine_state(std::span<const std::uint8_t> body) {
    state_reader in(body);
    machine_state s;
    {
        auto m = in.section(tag_machine);
        s.vcpu_count = m.u32();
        s.memory_bytes = m.u64();
        s.vsock_link = m.u8();
        s.vsock_cid = m.u64();
        m.expect_end();
        if (m.failed() || s.vcpu_count == 0 || s.vcpu_count > max_vcpus || s.memory_bytes == 0)
            return vm::snapshot_errc::corrupt_state;
    }
    {
        auto d = in.section(tag_devices);
        auto bytes = d.bytes(max_body_bytes);
        d.expect_end();
        if (d.failed()) return vm::snapshot_errc::corrupt_state;
        s.devices.assign(bytes.begin(), bytes.end());
    }
    s.vcpus.resize(s.vcpu_count);
    for (auto& v : s.vcpus) {
        auto c = in.section(tag_vcpu);
        const auto n = c.count(4 + sizeof(kvm_cpuid_entry2));
        if (n > max_cpuid_entries) return vm::snapshot_errc::corrupt_state;
        v.cpuid.resize(n);
        for (auto& e : v.cpuid) e = c.raw<kvm_cpuid_entry2>();
        v.mp_state = c.raw<kvm_mp_state>();
        v.regs = c.raw<kvm_regs>();
        v.sregs = c.raw<kvm_sregs>();
        v.xsave = c.raw<std::array<std::uint32_t, 1024>>();
        v.xcrs = c.raw<kvm_xcrs>();
        v.debugregs = c.raw<kvm_debugregs>();
        v.lapic = c.raw<kvm_lapic_state>();
        v.tsc_khz = c.u32();
        const auto m = c.count(12);
        if (m > max_msrs) return vm::snapshot_errc::corrupt_state;
        v.msrs.resize(m);
        for (auto& e : v.msrs) {
            e.index = c.u32();
            e.data = c.u64();
        }
        v.events = c.raw<kvm_vcpu_events>();
        c.expect_end();
        if (c.failed()) return vm::snapshot_errc::corrupt_state;
    }
    {
        auto m = in.section(tag_vm);
        s.vm.pit = m.raw<kvm_pit_state2>();
        s.vm.clock = m.raw<kvm_clock_data>();
        for (auto& c : s.vm.irqchips) c = m.raw<kvm_irqchip>();
        m.expect_end();
        if (m.failed()) return vm::snapshot_errc::corrupt_state;
    }
    in.expect_end();
    if (in.failed()) return vm::snapshot_errc::corrupt_state;
    return s;
}

}  // namespace mimobox::snapshot
