// The snapshot body's codec: round trip, and every hostile shape a loader can meet (wrong tags,
// counts past their limits or past the bytes left, a cut at every byte, trailing bytes).
#include "snapshot/machine_state.hpp"

#define BOOST_TEST_MODULE snapshot_machine_state
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"

using namespace mimobox;
using snapshot::machine_state;

namespace {

machine_state sample(std::uint32_t vcpus = 2) {
    machine_state s;
    s.vcpu_count = vcpus;
    s.memory_bytes = 256u << 20;
    s.vsock_link = 1;
    s.vsock_cid = 3;
    s.devices = {1, 2, 3, 4};
    for (std::uint32_t i = 0; i < vcpus; ++i) {
        snapshot::vcpu_state v;
        kvm_cpuid_entry2 leaf{};
        leaf.function = 1;
        leaf.ecx = 0x80000000u | i;
        v.cpuid.push_back(leaf);
        v.regs.rip = 0x1000 + i;
        v.xsave[7] = 42;
        v.tsc_khz = 2'000'000;
        v.msrs.push_back(kvm_msr_entry{0x10, 0, 12345});
        v.msrs.push_back(kvm_msr_entry{snapshot::msr_tsc_deadline, 0, 12346});
        s.vcpus.push_back(std::move(v));
    }
    s.vm.clock.clock = 99;
    s.vm.irqchips[2].chip_id = 2;
    return s;
}

bool decodes(std::span<const std::uint8_t> body) { return snapshot::decode_machine_state(body).has_value(); }

}  // namespace

BOOST_AUTO_TEST_CASE(a_machine_state_round_trips) {
    const auto bytes = snapshot::encode_machine_state(sample());
    auto back = snapshot::decode_machine_state(bytes);
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(back->vcpu_count == 2u);
    BOOST_TEST(back->vsock_cid == 3u);
    BOOST_TEST((back->devices == std::vector<std::uint8_t>{1, 2, 3, 4}));
    BOOST_TEST(back->vcpus[1].regs.rip == 0x1001u);
    BOOST_TEST(back->vcpus[1].cpuid.at(0).ecx == 0x80000001u);
    BOOST_TEST(back->vcpus[0].xsave[7] == 42u);
    BOOST_TEST(back->vcpus[0].msrs.at(1).index == snapshot::msr_tsc_deadline);
    BOOST_TEST(back->vm.clock.clock == 99u);
    BOOST_TEST((snapshot::encode_machine_state(*back) == bytes));
}

BOOST_AUTO_TEST_CASE(a_body_cut_anywhere_or_with_bytes_left_over_is_corrupt) {
    const auto bytes = snapshot::encode_machine_state(sample());
    for (std::size_t cut = 0; cut < bytes.size(); ++cut)
        BOOST_TEST((snapshot::decode_machine_state(std::span(bytes).first(cut)).error() == vm::snapshot_errc::corrupt_state));
    auto longer = bytes;
    longer.push_back(0);
    BOOST_TEST(!decodes(longer));
}

BOOST_AUTO_TEST_CASE(vcpu_counts_that_disagree_or_pass_the_limit_are_corrupt) {
    // The header says 3 vCPUs; the body holds 2.
    auto s = sample();
    s.vcpu_count = 3;
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    s = sample();
    s.vcpu_count = 1;  // one vCPU section left over
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    s = sample(0);
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    s = sample(1);
    s.vcpu_count = snapshot::max_vcpus + 1;
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    s = sample(1);
    s.memory_bytes = 0;
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
}

BOOST_AUTO_TEST_CASE(hostile_counts_allocate_nothing_and_are_corrupt) {
    // Too many CPUID entries and MSRs, each real (the bytes are there), past the limits.
    auto s = sample(1);
    s.vcpus[0].cpuid.resize(snapshot::max_cpuid_entries + 1);
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    s = sample(1);
    s.vcpus[0].msrs.resize(snapshot::max_msrs + 1);
    BOOST_TEST(!decodes(snapshot::encode_machine_state(s)));
    // A count of 2^32 - 1 MSRs with nothing behind it: refused before anything is allocated.
    auto bytes = snapshot::encode_machine_state(sample(1));
    const std::uint32_t msr_count_le = 2;  // the sample's MSR count, found after tsc_khz
    const std::uint32_t khz = 2'000'000;
    bool patched = false;
    for (std::size_t i = 0; i + 8 <= bytes.size() && !patched; ++i) {
        std::uint32_t a = 0, b = 0;
        std::memcpy(&a, &bytes[i], 4);
        std::memcpy(&b, &bytes[i + 4], 4);
        if (a == khz && b == msr_count_le) {
            const std::uint32_t huge = 0xffffffffu;
            std::memcpy(&bytes[i + 4], &huge, 4);
            patched = true;
        }
    }
    BOOST_REQUIRE(patched);
    BOOST_TEST(!decodes(bytes));
}

BOOST_AUTO_TEST_CASE(wrong_section_tags_are_corrupt) {
    auto bytes = snapshot::encode_machine_state(sample(1));
    bytes[0] ^= 0x20;  // "MACH" -> "mACH"
    BOOST_TEST(!decodes(bytes));
}

BOOST_AUTO_TEST_CASE(only_state_bearing_msrs_are_saved) {
    BOOST_TEST(snapshot::msr_is_saveable(0x10));         // TSC
    BOOST_TEST(snapshot::msr_is_saveable(0xc0000080u));  // EFER
    BOOST_TEST(snapshot::msr_is_saveable(0x4b564d01u));  // kvmclock system time
    BOOST_TEST(snapshot::msr_is_saveable(0x277));        // PAT
    BOOST_TEST(!snapshot::msr_is_saveable(0xe7));        // MPERF: derived
    BOOST_TEST(!snapshot::msr_is_saveable(0x8b));        // microcode revision
}
