#include "virtio/split_queue.hpp"

#define BOOST_TEST_MODULE split_queue
#include <boost/test/unit_test.hpp>

#include "../support/mock_driver.hpp"

using namespace mimobox;
using virtio::virtio_errc;

namespace {

constexpr std::uint64_t ram_size = 4u << 20;
constexpr std::uint64_t ring_base = 0x1000;
constexpr std::uint64_t buffers = 0x100000;

struct fixture {
    memory::guest_memory mem;
    std::optional<test::mock_driver> driver;
    std::optional<virtio::split_queue> queue;
    explicit fixture(std::uint16_t size = 8) {
        BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(ram_size).value()));
        driver.emplace(mem, size, ring_base, buffers);
        queue.emplace(virtio::split_queue::create(mem, driver->layout()).value());
    }
    boost::system::error_code pop_error() {
        auto r = queue->pop();
        return r ? boost::system::error_code{} : r.error();
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(empty_queue_pops_nothing) {
    fixture f;
    auto r = f.queue->pop();
    BOOST_REQUIRE(r);
    BOOST_TEST(!r->has_value());
}

BOOST_AUTO_TEST_CASE(chain_round_trips_readable_and_writable_buffers) {
    fixture f;
    auto head = f.driver->offer({{1, 2, 3}, {4, 5}}, {16});
    auto chain = f.queue->pop().value().value();
    BOOST_TEST(chain.head == head);
    BOOST_TEST(chain.readable.size() == 2u);
    BOOST_TEST(chain.readable_bytes() == 5u);
    BOOST_TEST(chain.writable_bytes() == 16u);
    BOOST_TEST(f.driver->read(chain.readable[1].addr, 2) == (std::vector<std::uint8_t>{4, 5}));
    BOOST_TEST(f.queue->in_flight() == 1u);
    BOOST_REQUIRE(!f.queue->push_used(chain.head, 7));
    auto used = f.driver->take_used();
    BOOST_REQUIRE(used);
    BOOST_TEST(used->first == head);
    BOOST_TEST(used->second == 7u);
    BOOST_TEST(f.queue->in_flight() == 0u);
}

BOOST_AUTO_TEST_CASE(the_drivers_used_event_is_read_from_after_the_avail_ring) {
    fixture f;
    // avail ring: flags, idx, ring[8], then used_event.
    const std::uint16_t seen = 0x1234;
    BOOST_REQUIRE(!f.mem.write(memory::guest_addr(f.driver->layout().driver + 4 + 2 * 8), std::as_bytes(std::span(&seen, 1))));
    BOOST_TEST(f.queue->driver_used_event() == 0x1234);
}

BOOST_AUTO_TEST_CASE(head_index_outside_queue_is_an_error) {
    fixture f;
    f.driver->make_available(8);
    BOOST_TEST((f.pop_error() == virtio_errc::descriptor_index_out_of_range));
}

BOOST_AUTO_TEST_CASE(next_index_outside_queue_is_an_error) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 8, test::mock_driver::f_next, 200);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::descriptor_index_out_of_range));
}

BOOST_AUTO_TEST_CASE(descriptor_loop_is_caught_at_queue_size) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 8, test::mock_driver::f_next, 1);
    f.driver->write_descriptor(1, buffers, 8, test::mock_driver::f_next, 0);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::chain_too_long));
}

BOOST_AUTO_TEST_CASE(self_loop_is_caught) {
    fixture f;
    f.driver->write_descriptor(3, buffers, 8, test::mock_driver::f_next, 3);
    f.driver->make_available(3);
    BOOST_TEST((f.pop_error() == virtio_errc::chain_too_long));
}

BOOST_AUTO_TEST_CASE(buffer_outside_guest_memory_is_an_error) {
    fixture f;
    f.driver->write_descriptor(0, ram_size - 4, 8, 0, 0);  // straddles the end of RAM
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::descriptor_out_of_memory));
}

BOOST_AUTO_TEST_CASE(huge_length_and_wrapping_address_are_errors) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 0xffffffff, 0, 0);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::descriptor_out_of_memory));
    fixture g;
    g.driver->write_descriptor(0, 0xfffffffffffffff0ull, 0x20, 0, 0);
    g.driver->make_available(0);
    BOOST_TEST((g.pop_error() == virtio_errc::descriptor_out_of_memory));
}

BOOST_AUTO_TEST_CASE(zero_length_buffer_is_an_error) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 0, 0, 0);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::zero_length_descriptor));
}

BOOST_AUTO_TEST_CASE(readable_after_writable_is_an_error) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 8, test::mock_driver::f_write | test::mock_driver::f_next, 1);
    f.driver->write_descriptor(1, buffers + 64, 8, 0, 0);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::readable_after_writable));
}

BOOST_AUTO_TEST_CASE(indirect_descriptor_without_negotiation_is_an_error) {
    fixture f;
    f.driver->write_descriptor(0, buffers, 16, test::mock_driver::f_indirect, 0);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::indirect_not_negotiated));
}

BOOST_AUTO_TEST_CASE(chain_over_the_byte_limit_is_an_error) {
    fixture f(64);
    // 9 descriptors of 2 MiB each (inside the 4 MiB RAM, reusing the same bytes) exceed 16 MiB.
    for (std::uint16_t i = 0; i < 9; ++i)
        f.driver->write_descriptor(i, 0x200000, 2u << 20, i < 8 ? test::mock_driver::f_next : 0, i + 1);
    f.driver->make_available(0);
    BOOST_TEST((f.pop_error() == virtio_errc::chain_too_large));
}

BOOST_AUTO_TEST_CASE(available_index_jumping_past_queue_size_is_an_error) {
    fixture f;
    f.driver->set_avail_idx(9);
    BOOST_TEST((f.pop_error() == virtio_errc::avail_index_jump));
}

BOOST_AUTO_TEST_CASE(same_head_offered_twice_while_in_flight_is_an_error) {
    fixture f;
    auto head = f.driver->offer({{1}}, {});
    BOOST_REQUIRE(f.queue->pop().value().has_value());
    f.driver->make_available(head);
    BOOST_TEST((f.pop_error() == virtio_errc::descriptor_index_out_of_range));
}

BOOST_AUTO_TEST_CASE(free_running_indices_wrap_past_65535) {
    fixture f(4);
    for (unsigned i = 0; i < 70000; ++i) {
        auto head = f.driver->offer({{static_cast<std::uint8_t>(i)}}, {4});
        auto chain = f.queue->pop().value();
        BOOST_REQUIRE(chain.has_value());
        BOOST_REQUIRE(chain->head == head);
        BOOST_REQUIRE(!f.queue->push_used(chain->head, 4));
        BOOST_REQUIRE(f.driver->take_used().has_value());
    }
    BOOST_TEST(f.queue->next_avail() == static_cast<std::uint16_t>(70000));
}

BOOST_AUTO_TEST_CASE(returning_an_unknown_head_is_an_error) {
    fixture f;
    BOOST_TEST((f.queue->push_used(2, 0) == virtio_errc::used_buffer_unknown));
    BOOST_TEST((f.queue->push_used(100, 0) == virtio_errc::used_buffer_unknown));
}

BOOST_AUTO_TEST_CASE(rings_outside_memory_or_misaligned_are_rejected) {
    memory::guest_memory mem;
    BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(0x10000).value()));
    virtio::queue_layout l{8, 0x1000, 0x1080, 0x2000};
    BOOST_TEST(virtio::split_queue::create(mem, l).has_value());
    auto bad = l;
    bad.desc = 0x1008;  // not 16-byte aligned
    BOOST_TEST((virtio::split_queue::create(mem, bad).error() == virtio_errc::ring_out_of_memory));
    bad = l;
    bad.device = 0xfff8;  // runs past the end of RAM
    BOOST_TEST((virtio::split_queue::create(mem, bad).error() == virtio_errc::ring_out_of_memory));
    bad = l;
    bad.size = 6;  // not a power of two
    BOOST_TEST((virtio::split_queue::create(mem, bad).error() == virtio_errc::ring_out_of_memory));
}

BOOST_AUTO_TEST_CASE(driver_can_suppress_interrupts) {
    fixture f;
    BOOST_TEST(f.queue->should_notify());
    f.driver->set_avail_flags(1);
    BOOST_TEST(!f.queue->should_notify());
}

BOOST_AUTO_TEST_CASE(device_can_ask_the_driver_not_to_kick) {
    fixture f;
    BOOST_TEST(f.driver->device_wants_kicks());  // a fresh used ring is zeroed
    f.queue->set_driver_notifications(false);
    BOOST_TEST(!f.driver->device_wants_kicks());
    f.queue->set_driver_notifications(true);
    BOOST_TEST(f.driver->device_wants_kicks());
}

BOOST_AUTO_TEST_CASE(asking_for_kicks_overwrites_whatever_the_driver_left_in_the_flags) {
    fixture f;
    f.driver->set_used_flags(0xffff);
    f.queue->set_driver_notifications(true);
    BOOST_TEST(f.driver->device_wants_kicks());
}

BOOST_AUTO_TEST_CASE(buffers_added_without_a_kick_are_seen_until_popped) {
    fixture f;
    BOOST_TEST(!f.queue->driver_added_buffers());
    f.driver->offer_quietly(64);
    BOOST_TEST(f.queue->driver_added_buffers());
    BOOST_REQUIRE(f.queue->pop().value().has_value());
    BOOST_TEST(!f.queue->driver_added_buffers());
}
