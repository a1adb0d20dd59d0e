#include "memory/guest_memory.hpp"

#define BOOST_TEST_MODULE guest_memory
#include <boost/test/unit_test.hpp>

#include <array>
#include <cstdint>
#include <limits>

using namespace mimobox::memory;

namespace {
guest_memory two_regions() {
    guest_memory mem;
    BOOST_REQUIRE(!mem.add_region(guest_addr(0), mapping::anonymous(0x10000).value()));
    BOOST_REQUIRE(!mem.add_region(guest_addr(0x100000), mapping::anonymous(0x10000).value()));
    return mem;
}
}  // namespace

BOOST_AUTO_TEST_CASE(anonymous_mapping_is_2mib_aligned_and_zeroed) {
    auto m = mapping::anonymous(3 << 20);
    BOOST_REQUIRE(m);
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(m->data()) % (2u << 20) == 0u);
    BOOST_TEST(static_cast<int>(m->data()[(3 << 20) - 1]) == 0);
}

BOOST_AUTO_TEST_CASE(round_trips_objects_inside_a_region) {
    auto mem = two_regions();
    BOOST_REQUIRE(!mem.write_obj(guest_addr(0x100010), std::uint64_t{0x1122334455667788}));
    auto v = mem.read_obj<std::uint64_t>(guest_addr(0x100010));
    BOOST_REQUIRE(v);
    BOOST_TEST(*v == 0x1122334455667788u);
    BOOST_TEST(mem.total_size() == 0x20000u);
}

BOOST_AUTO_TEST_CASE(rejects_access_past_region_end) {
    auto mem = two_regions();
    BOOST_TEST(mem.host_span(guest_addr(0xfff8), 8).has_value());
    BOOST_TEST(!mem.host_span(guest_addr(0xfff9), 8).has_value());
    BOOST_TEST(mem.read_obj<std::uint64_t>(guest_addr(0x10fffc)).has_error());
}

BOOST_AUTO_TEST_CASE(rejects_access_in_the_gap_between_regions) {
    auto mem = two_regions();
    BOOST_TEST(!mem.host_span(guest_addr(0x20000), 1).has_value());
    // A range that starts in one region and ends in the next is not contiguous host memory.
    BOOST_TEST(!mem.host_span(guest_addr(0xff00), 0x100000).has_value());
}

BOOST_AUTO_TEST_CASE(rejects_ranges_that_wrap_the_address_space) {
    auto mem = two_regions();
    BOOST_TEST(!mem.host_span(guest_addr(0x10), std::numeric_limits<std::uint64_t>::max()).has_value());
    BOOST_TEST(!mem.host_span(guest_addr(std::numeric_limits<std::uint64_t>::max()), 2).has_value());
}

BOOST_AUTO_TEST_CASE(rejects_overlapping_regions) {
    auto mem = two_regions();
    BOOST_TEST(mem.add_region(guest_addr(0x8000), mapping::anonymous(0x1000).value()).value() == EINVAL);
    BOOST_TEST(!mem.add_region(guest_addr(0x200000), mapping::anonymous(0x1000).value()));
    BOOST_TEST(mem.regions().size() == 3u);
}

BOOST_AUTO_TEST_CASE(file_private_mapping_rejects_a_short_file) {
    FILE* f = std::tmpfile();
    BOOST_REQUIRE(f);
    std::array<char, 4096> page{};
    std::fwrite(page.data(), 1, page.size(), f);
    std::fflush(f);
    BOOST_TEST(mapping::file_private(fileno(f), 8192, 0).has_error());
    BOOST_TEST(mapping::file_private(fileno(f), 4096, 0).has_value());
    std::fclose(f);
}
