#include "boot/mptable.hpp"

#define BOOST_TEST_MODULE boot_tables
#include <boost/test/unit_test.hpp>

#include "boot/cmdline.hpp"
#include "boot/cpuid.hpp"
#include "boot/layout.hpp"
#include "boot/zero_page.hpp"
#include "mimobox/vm/error.hpp"

#include <numeric>
#include <vector>

using namespace mimobox;
using namespace mimobox::boot;

namespace {
memory::guest_memory low_memory() {
    memory::guest_memory mem;
    BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(2u << 20).value()));
    return mem;
}
std::uint8_t byte_sum(const memory::guest_memory& mem, std::uint64_t addr, std::size_t n) {
    auto s = mem.host_span(memory::guest_addr(addr), n).value();
    return static_cast<std::uint8_t>(std::accumulate(s.begin(), s.end(), 0u, [](unsigned a, std::byte b) {
        return a + static_cast<unsigned>(b);
    }));
}
}  // namespace

BOOST_AUTO_TEST_CASE(mptable_has_valid_signatures_and_checksums) {
    auto mem = low_memory();
    BOOST_REQUIRE(!write_mptable(mem, 4));
    auto fp = mem.host_span(memory::guest_addr(layout::ebda_start), 16).value();
    BOOST_TEST(std::string(reinterpret_cast<const char*>(fp.data()), 4) == "_MP_");
    BOOST_TEST(byte_sum(mem, layout::ebda_start, 16) == 0);
    auto table_addr = mem.read_obj<std::uint32_t>(memory::guest_addr(layout::ebda_start + 4)).value();
    auto length = mem.read_obj<std::uint16_t>(memory::guest_addr(table_addr + 4)).value();
    BOOST_TEST(length + 16u == mptable_size(4));
    BOOST_TEST(byte_sum(mem, table_addr, length) == 0);
    // The last CPU entry carries APIC id 3 and is enabled but not the BSP.
    auto cpu3 = table_addr + 44 + 3 * 20;
    BOOST_TEST(mem.read_obj<std::uint8_t>(memory::guest_addr(cpu3 + 1)).value() == 3);
    BOOST_TEST(mem.read_obj<std::uint8_t>(memory::guest_addr(cpu3 + 3)).value() == 1);
}

BOOST_AUTO_TEST_CASE(e820_excludes_mmio_gap_and_reserves_mp_table) {
    auto small = e820_map(256u << 20);
    BOOST_TEST(small.size() == 3u);
    BOOST_TEST(small[1].type == e820_reserved);
    BOOST_TEST(small[2].addr + small[2].size == (256u << 20));
    auto large = e820_map(8ull << 30);
    BOOST_TEST(large.size() == 4u);
    BOOST_TEST(large[2].addr + large[2].size == layout::mmio_gap_start);
    BOOST_TEST(large[3].addr == layout::mmio_gap_end);
    BOOST_TEST(large[3].size == (8ull << 30) - layout::mmio_gap_start);
}

BOOST_AUTO_TEST_CASE(cmdline_rejects_control_characters_and_checks_length) {
    kernel_cmdline line;
    BOOST_TEST(!line.append("console=ttyS0  quiet "));
    BOOST_TEST(line.str() == "console=ttyS0  quiet");
    BOOST_TEST((line.append("init=/bin/sh\nrm") == vm::microvm_errc::cmdline_invalid));
    BOOST_TEST((line.append(std::string("a\0b", 3)) == vm::microvm_errc::cmdline_invalid));
    BOOST_TEST(line.str() == "console=ttyS0  quiet");
    BOOST_TEST(!line.check_length(20));
    BOOST_TEST((line.check_length(19) == vm::microvm_errc::cmdline_too_long));
}

BOOST_AUTO_TEST_CASE(cpuid_gets_apic_id_hypervisor_bit_and_topology) {
    std::vector<kvm_cpuid_entry2> supported(3);
    supported[0].function = 1;
    supported[1].function = 0xb;
    supported[1].index = 0;
    supported[2].function = 0xb;
    supported[2].index = 1;
    auto out = normalize_cpuid(supported, 2, 3);
    BOOST_TEST((out[0].ebx >> 24) == 2u);          // APIC id
    BOOST_TEST(((out[0].ebx >> 16) & 0xff) == 4u); // logical count rounded up to a power of two
    BOOST_TEST((out[0].ecx & (1u << 31)) != 0u);   // hypervisor
    BOOST_TEST((out[0].edx & (1u << 28)) != 0u);   // HTT with several vCPUs
    BOOST_TEST(out[1].edx == 2u);
    BOOST_TEST(out[2].ebx == 3u);
    BOOST_TEST(((out[2].ecx >> 8) & 0xff) == 2u);  // core level
}
