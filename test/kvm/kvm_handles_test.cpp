// The lib/kvm handle chain against real KVM: system -> vm -> memory slot -> vcpu -> KVM_RUN.
#include "kvm/system.hpp"

#include "kvm/vcpu.hpp"
#include "kvm/vm.hpp"
#include "memory/mapping.hpp"
#include "snapshot/state_codec.hpp"

#define BOOST_TEST_MODULE kvm_handles
#include <boost/test/unit_test.hpp>

#include <array>
#include <cerrno>
#include <optional>
#include <cstring>
#include <string>
#include <vector>

using namespace mimobox;

namespace {

constexpr std::uint64_t code_gpa = 0x1000;
constexpr std::uint16_t test_port = 0x3f8;

// Real mode: write "KVM!" byte by byte to port 0x3f8, then halt.
//   mov dx, 0x3f8 ; mov al, 'K' ; out dx, al ; ... ; hlt
std::vector<std::uint8_t> realmode_program() {
    std::vector<std::uint8_t> code = {0xba, 0xf8, 0x03};
    for (char c : std::string("KVM!")) {
        code.insert(code.end(), {0xb0, static_cast<std::uint8_t>(c), 0xee});
    }
    code.push_back(0xf4);
    return code;
}

struct realmode_vm {
    kvm::system sys = kvm::system::open().value();
    kvm::vm vm = sys.create_vm().value();
    memory::mapping ram = memory::mapping::anonymous(0x10000).value();
    kvm::vcpu cpu = make_cpu();

    kvm::vcpu make_cpu() {
        auto code = realmode_program();
        std::memcpy(ram.data() + code_gpa, code.data(), code.size());
        BOOST_REQUIRE(!vm.set_user_memory_region(0, 0, ram.size(), ram.data()));
        auto c = vm.create_vcpu(0, sys.vcpu_mmap_size().value()).value();
        auto sregs = c.get_sregs().value();
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        BOOST_REQUIRE(!c.set_sregs(sregs));
        kvm_regs regs{};
        regs.rip = code_gpa;
        regs.rflags = 2;
        BOOST_REQUIRE(!c.set_regs(regs));
        return c;
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(system_reports_api_12_and_required_capabilities) {
    auto sys = kvm::system::open();
    BOOST_REQUIRE_MESSAGE(sys, "open /dev/kvm: " << sys.error().message());
    BOOST_TEST(sys->check_extension(KVM_CAP_USER_MEMORY) > 0);
    BOOST_TEST(sys->check_extension(KVM_CAP_IRQFD) > 0);
    BOOST_TEST(sys->check_extension(KVM_CAP_IOEVENTFD) > 0);
    BOOST_TEST(sys->vcpu_mmap_size().value() >= static_cast<int>(sizeof(kvm_run)));
    auto cpuid = sys->supported_cpuid();
    BOOST_REQUIRE_MESSAGE(cpuid, "KVM_GET_SUPPORTED_CPUID: " << cpuid.error().message());
    BOOST_TEST(cpuid->size() > 4u);
}

BOOST_AUTO_TEST_CASE(realmode_guest_writes_exact_bytes_to_io_port_then_halts) {
    realmode_vm t;
    std::string written;
    for (int exits = 0; exits < 16; ++exits) {
        BOOST_REQUIRE(!t.cpu.run());
        kvm_run& run = t.cpu.run_state();
        if (run.exit_reason != KVM_EXIT_IO) {
            BOOST_TEST(run.exit_reason == static_cast<std::uint32_t>(KVM_EXIT_HLT));
            break;
        }
        BOOST_TEST(run.io.direction == KVM_EXIT_IO_OUT);
        BOOST_TEST(run.io.port == test_port);
        BOOST_TEST(run.io.size == 1);
        // data_offset is inside the mmapped kvm_run area, which is vcpu_mmap_size bytes long.
        written.push_back(reinterpret_cast<const char*>(&run)[run.io.data_offset]);
    }
    BOOST_TEST(written == "KVM!");
    BOOST_TEST(t.cpu.get_regs().value().rip == code_gpa + realmode_program().size());
}

BOOST_AUTO_TEST_CASE(overlapping_memory_slot_is_rejected_with_errno) {
    realmode_vm t;
    auto other = memory::mapping::anonymous(0x1000).value();
    auto ec = t.vm.set_user_memory_region(1, 0x8000, other.size(), other.data());
    BOOST_TEST(ec.value() == EEXIST);
}

BOOST_AUTO_TEST_CASE(second_vcpu_with_same_id_is_rejected) {
    realmode_vm t;
    auto again = t.vm.create_vcpu(0, t.sys.vcpu_mmap_size().value());
    BOOST_TEST(again.has_error());
}

// ---- the state a snapshot saves, saved from one VM and set into another (kvm-reference.md §6)

namespace {

constexpr std::uint16_t done_port = 0x3f9;

// Real mode: "KVM!" to 0x3f8 one byte at a time, then a write to done_port. No HLT: with an
// in-kernel irqchip a halted vCPU waits in the kernel instead of exiting.
std::vector<std::uint8_t> snapshot_program() {
    std::vector<std::uint8_t> code = {0xba, 0xf8, 0x03};
    for (char c : std::string("KVM!")) code.insert(code.end(), {0xb0, static_cast<std::uint8_t>(c), 0xee});
    code.insert(code.end(), {0xba, 0xf9, 0x03, 0xee});  // mov dx, 0x3f9 ; out dx, al
    code.insert(code.end(), {0xeb, 0xfe});              // jmp $ (never reached by the test)
    return code;
}

struct irqchip_vm {
    kvm::system& sys;
    kvm::vm vm = sys.create_vm().value();
    memory::mapping ram = memory::mapping::anonymous(0x10000).value();
    std::optional<kvm::vcpu> cpu;
    explicit irqchip_vm(kvm::system& s) : sys(s) {
        BOOST_REQUIRE(!vm.set_tss_addr(0xfffbd000));
        BOOST_REQUIRE(!vm.create_irqchip());
        BOOST_REQUIRE(!vm.create_pit2());
        BOOST_REQUIRE(!vm.set_user_memory_region(0, 0, ram.size(), ram.data()));
        cpu.emplace(vm.create_vcpu(0, sys.vcpu_mmap_size().value()).value());
    }
    // Runs until the next port write; the byte written, or -1 for done_port.
    int next_out() {
        for (;;) {
            auto ec = cpu->run();
            BOOST_REQUIRE_MESSAGE(!ec, "KVM_RUN: " << ec.message());
            auto& run = cpu->run_state();
            BOOST_REQUIRE_EQUAL(run.exit_reason, static_cast<std::uint32_t>(KVM_EXIT_IO));
            if (run.io.port == done_port) return -1;
            return reinterpret_cast<const unsigned char*>(&run)[run.io.data_offset];
        }
    }
};

// What a snapshot keeps of one vCPU and the VM, through the snapshot codec's writer and reader.
struct saved_state {
    kvm_mp_state mp{};
    kvm_regs regs{};
    kvm_sregs sregs{};
    kvm_xsave xsave{};
    kvm_xcrs xcrs{};
    kvm_debugregs debugregs{};
    kvm_lapic_state lapic{};
    kvm_vcpu_events events{};
    std::vector<kvm_msr_entry> msrs;
    kvm_pit_state2 pit{};
    kvm_clock_data clock{};
    std::array<kvm_irqchip, 3> chips{};
};

}  // namespace

BOOST_AUTO_TEST_CASE(vcpu_and_vm_state_saved_mid_program_resume_in_another_vm) {
    auto sys = kvm::system::open().value();
    irqchip_vm a(sys);
    const auto code = snapshot_program();
    std::memcpy(a.ram.data() + code_gpa, code.data(), code.size());
    auto sregs = a.cpu->get_sregs().value();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    BOOST_REQUIRE(!a.cpu->set_sregs(sregs));
    kvm_regs regs{};
    regs.rip = code_gpa;
    regs.rflags = 2;
    BOOST_REQUIRE(!a.cpu->set_regs(regs));
    BOOST_REQUIRE_EQUAL(a.next_out(), 'K');
    // Complete the port write before saving: one more entry that returns at once.
    a.cpu->run_state().immediate_exit = 1;
    BOOST_TEST(a.cpu->run().value() == EINTR);
    a.cpu->run_state().immediate_exit = 0;

    // Save, in kvm-reference.md §6's order, through the codec.
    mimobox::snapshot::state_writer w;
    w.raw(a.cpu->get_mp_state().value());
    w.raw(a.cpu->get_regs().value());
    w.raw(a.cpu->get_sregs().value());
    w.raw(a.cpu->get_xsave().value());
    w.raw(a.cpu->get_xcrs().value());
    w.raw(a.cpu->get_debugregs().value());
    w.raw(a.cpu->get_lapic().value());
    std::vector<kvm_msr_entry> msrs(3);
    msrs[0].index = 0x10;        // TSC
    msrs[1].index = 0x1b;        // APIC base
    msrs[2].index = 0xc0000080;  // EFER
    BOOST_TEST(a.cpu->get_msrs(msrs).value() == msrs.size());
    w.u32(static_cast<std::uint32_t>(msrs.size()));
    for (const auto& m : msrs) w.raw(m);
    w.raw(a.cpu->get_vcpu_events().value());
    w.raw(a.vm.get_pit2().value());
    w.raw(a.vm.get_clock().value());
    for (std::uint32_t chip = 0; chip < 3; ++chip) w.raw(a.vm.get_irqchip(chip).value());
    const auto blob = w.take();

    mimobox::snapshot::state_reader r(blob);
    saved_state s;
    s.mp = r.raw<kvm_mp_state>();
    s.regs = r.raw<kvm_regs>();
    s.sregs = r.raw<kvm_sregs>();
    s.xsave = r.raw<kvm_xsave>();
    s.xcrs = r.raw<kvm_xcrs>();
    s.debugregs = r.raw<kvm_debugregs>();
    s.lapic = r.raw<kvm_lapic_state>();
    const auto n = r.count(sizeof(kvm_msr_entry));
    for (std::uint32_t i = 0; i < n; ++i) s.msrs.push_back(r.raw<kvm_msr_entry>());
    s.events = r.raw<kvm_vcpu_events>();
    s.pit = r.raw<kvm_pit_state2>();
    s.clock = r.raw<kvm_clock_data>();
    for (auto& c : s.chips) c = r.raw<kvm_irqchip>();
    r.expect_end();
    BOOST_REQUIRE(!r.error());

    // Restore into a fresh VM with a copy of the memory, in the restore order.
    irqchip_vm b(sys);
    std::memcpy(b.ram.data(), a.ram.data(), a.ram.size());
    BOOST_REQUIRE(!b.cpu->set_mp_state(s.mp));
    BOOST_REQUIRE(!b.cpu->set_regs(s.regs));
    BOOST_REQUIRE(!b.cpu->set_sregs(s.sregs));
    BOOST_REQUIRE(!b.cpu->set_xsave(s.xsave));
    BOOST_REQUIRE(!b.cpu->set_xcrs(s.xcrs));
    BOOST_REQUIRE(!b.cpu->set_debugregs(s.debugregs));
    BOOST_REQUIRE(!b.cpu->set_lapic(s.lapic));
    BOOST_REQUIRE(!b.cpu->set_msrs(s.msrs));
    BOOST_REQUIRE(!b.cpu->set_vcpu_events(s.events));
    BOOST_REQUIRE(!b.vm.set_pit2(s.pit));
    kvm_clock_data clock = s.clock;
    clock.flags = 0;  // only the value is settable everywhere
    BOOST_REQUIRE(!b.vm.set_clock(clock));
    for (const auto& c : s.chips) BOOST_REQUIRE(!b.vm.set_irqchip(c));

    // The copy continues exactly where the original was: the rest of the string, then done.
    std::string rest;
    for (int out; (out = b.next_out()) >= 0;) rest.push_back(static_cast<char>(out));
    BOOST_TEST(rest == "VM!");
}
