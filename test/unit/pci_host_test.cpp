#include "devices/pci_host.hpp"

#define BOOST_TEST_MODULE pci_host
#include <boost/test/unit_test.hpp>

#include "../support/little_endian.hpp"

#include <array>
#include <vector>

using namespace mimobox;

namespace {

struct recording_function final : devices::pci_function {
    std::vector<std::pair<std::uint32_t, std::size_t>> reads, writes;
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override {
        reads.emplace_back(offset, data.size());
        for (auto& b : data) b = 0x5a;
    }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        writes.emplace_back(offset, data.size());
    }
};

struct fixture {
    devices::pci_host host;
    recording_function fn;
    std::uint32_t in(std::uint64_t port_offset, std::size_t width) {
        std::array<std::uint8_t, 8> b{};
        host.read(port_offset, std::span(b).first(width));
        return static_cast<std::uint32_t>(test::le_value(std::span(b).first(width)));
    }
    void out(std::uint64_t port_offset, std::uint32_t v, std::size_t width) {
        const auto b = test::le_bytes(v);
        host.write(port_offset, std::span(b).first(width));
    }
    void select(unsigned device, unsigned reg, unsigned function = 0, unsigned bus = 0) {
        out(0, 0x80000000u | bus << 16 | device << 11 | function << 8 | reg, 4);
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(pci_host_suite, fixture)

BOOST_AUTO_TEST_CASE(the_address_latch_reads_back_whole_and_ignores_byte_writes) {
    out(0, 0x80000000u, 4);
    out(3, 0x01, 1);  // Linux's mechanism-2 probe pokes 0xcfb
    BOOST_TEST(in(0, 4) == 0x80000000u);
    BOOST_TEST(in(0, 1) == 0xffu);
}

BOOST_AUTO_TEST_CASE(device_0_is_a_host_bridge_and_empty_slots_read_all_ones) {
    select(0, 0x08);
    BOOST_TEST(in(4 + 2, 2) == 0x0600u);  // class: host bridge (Linux's sanity check)
    select(5, 0x00);
    BOOST_TEST(in(4, 4) == 0xffffffffu);
}

BOOST_AUTO_TEST_CASE(accesses_reach_the_function_at_its_slot_with_the_byte_offset) {
    BOOST_TEST(host.add(1, fn));
    BOOST_TEST(!host.add(1, fn));
    BOOST_TEST(!host.add(0, fn));   // the host bridge's
    BOOST_TEST(!host.add(32, fn));  // no such device number
    select(1, 0x40);
    BOOST_TEST(in(4 + 2, 2) == 0x5a5au);
    out(4 + 1, 0x12, 1);
    BOOST_TEST_REQUIRE(fn.reads.size() == 1u);
    BOOST_TEST(fn.reads[0].first == 0x42u);
    BOOST_TEST_REQUIRE(fn.writes.size() == 1u);
    BOOST_TEST(fn.writes[0].first == 0x41u);
}

BOOST_AUTO_TEST_CASE(disabled_other_bus_other_function_and_unaligned_accesses_reach_nothing) {
    BOOST_TEST(host.add(1, fn));
    out(0, 1u << 11, 4);  // enable bit clear
    BOOST_TEST(in(4, 4) == 0xffffffffu);
    select(1, 0, 0, 1);
    BOOST_TEST(in(4, 4) == 0xffffffffu);
    select(1, 0, 3);
    BOOST_TEST(in(4, 4) == 0xffffffffu);
    select(1, 0);
    BOOST_TEST(in(4 + 1, 2) == 0xffffu);  // a 16-bit access at an odd offset
    out(4 + 2, 0, 4);
    BOOST_TEST(fn.reads.empty());
    BOOST_TEST(fn.writes.empty());
}

BOOST_AUTO_TEST_SUITE_END()
