// The lib/kvm handle chain against real KVM: system -> vm -> memory slot -> vcpu -> KVM_RUN.
#include "kvm/system.hpp"

#include "kvm/vcpu.hpp"
#include "kvm/vm.hpp"
#include "memory/mapping.hpp"

#define BOOST_TEST_MODULE kvm_handles
#include <boost/test/unit_test.hpp>

#include <array>
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
