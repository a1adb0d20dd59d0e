#include "virtio/mmio_transport.hpp"

#define BOOST_TEST_MODULE mmio_transport
#include <boost/test/unit_test.hpp>

#include "../support/fake_virtio_device.hpp"
#include "../support/mock_driver.hpp"

#include <cstring>

using namespace mimobox;
namespace st = virtio::status;

namespace {

struct counting_irq final : devices::interrupt_line {
    int count = 0;
    void trigger() override { ++count; }
};

using fake_device = test::fake_virtio_device;

struct fixture {
    memory::guest_memory mem;
    fake_device dev;
    counting_irq irq;
    std::optional<virtio::mmio_transport> t;
    fixture() {
        BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(1u << 20).value()));
        t.emplace(dev, mem, irq);
    }
    std::uint32_t rd(std::uint64_t off) {
        std::uint32_t v = 0;
        t->read(off, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
        return v;
    }
    void wr(std::uint64_t off, std::uint32_t v) { t->write(off, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4)); }
    void negotiate(std::uint64_t features = virtio::feature_version_1) {
        wr(0x70, st::acknowledge);
        wr(0x70, st::acknowledge | st::driver);
        wr(0x24, 0);
        wr(0x20, static_cast<std::uint32_t>(features));
        wr(0x24, 1);
        wr(0x20, static_cast<std::uint32_t>(features >> 32));
        wr(0x70, st::acknowledge | st::driver | st::features_ok);
    }
    /// Negotiates, sets up both queues and writes DRIVER_OK; returns the status written.
    std::uint32_t bring_up() {
        negotiate();
        setup_queue(0, 8, 0x1000);
        setup_queue(1, 4, 0x3000);
        const std::uint32_t up = st::acknowledge | st::driver | st::features_ok | st::driver_ok;
        wr(0x70, up);
        return up;
    }
    void setup_queue(std::uint32_t index, std::uint32_t size, std::uint64_t base) {
        test::mock_driver layout_only(mem, static_cast<std::uint16_t>(size), base, 0x80000);
        auto& l = layout_only.layout();
        wr(0x30, index);
        wr(0x38, size);
        wr(0x80, static_cast<std::uint32_t>(l.desc));
        wr(0x84, 0);
        wr(0x90, static_cast<std::uint32_t>(l.driver));
        wr(0x94, 0);
        wr(0xa0, static_cast<std::uint32_t>(l.device));
        wr(0xa4, 0);
        wr(0x44, 1);
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(mmio, fixture)

BOOST_AUTO_TEST_CASE(identity_registers_read_as_virtio_mmio_v2) {
    BOOST_TEST(rd(0x000) == 0x74726976u);
    BOOST_TEST(rd(0x004) == 2u);
    BOOST_TEST(rd(0x008) == 19u);
    wr(0x14, 1);
    BOOST_TEST(rd(0x010) == 1u);  // VERSION_1 is bit 32
    wr(0x14, 0);
    BOOST_TEST(rd(0x010) == 1u);  // the device's own bit 0
    BOOST_TEST(rd(0x100) == 0xa3a2a1a0u);
}

BOOST_AUTO_TEST_CASE(full_handshake_activates_device_with_every_queue) {
    negotiate(virtio::feature_version_1 | 1);
    BOOST_TEST((rd(0x70) & st::features_ok) != 0u);
    setup_queue(0, 8, 0x1000);
    setup_queue(1, 4, 0x3000);
    BOOST_TEST(rd(0x44) == 1u);
    wr(0x70, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
    BOOST_TEST(dev.activations == 1);
    BOOST_TEST(dev.activated_queues == 2u);
    BOOST_TEST(t->active());
    wr(0x50, 1);
    BOOST_TEST(dev.notified == std::vector<std::size_t>{1});
}

BOOST_AUTO_TEST_CASE(features_ok_refused_without_version_1_or_with_unoffered_bits) {
    negotiate(1);  // legacy driver: no VERSION_1
    BOOST_TEST((rd(0x70) & st::features_ok) == 0u);
    wr(0x70, 0);
    negotiate(virtio::feature_version_1 | (1u << 5));
    BOOST_TEST((rd(0x70) & st::features_ok) == 0u);
}

BOOST_AUTO_TEST_CASE(queue_registers_ignored_before_features_ok) {
    wr(0x70, st::acknowledge | st::driver);
    wr(0x30, 0);
    wr(0x38, 8);
    wr(0x44, 1);
    BOOST_TEST(rd(0x44) == 0u);
    BOOST_TEST((rd(0x70) & st::device_needs_reset) == 0u);
}

BOOST_AUTO_TEST_CASE(queue_larger_than_max_or_rings_outside_memory_need_reset) {
    negotiate();
    setup_queue(0, 16, 0x1000);  // max is 8
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
    BOOST_TEST((rd(0x60) & virtio::interrupt_config_change) != 0u);
    BOOST_TEST(irq.count == 1);
    wr(0x70, 0);
    negotiate();
    setup_queue(0, 8, (1u << 20) - 0x40);  // rings run past the end of RAM
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
    BOOST_TEST(rd(0x44) == 0u);
}

BOOST_AUTO_TEST_CASE(driver_ok_without_all_queues_ready_fails_the_device) {
    negotiate();
    setup_queue(0, 8, 0x1000);
    wr(0x70, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
    BOOST_TEST(dev.activations == 0);
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
}

BOOST_AUTO_TEST_CASE(notify_before_driver_ok_is_ignored) {
    negotiate();
    wr(0x50, 0);
    BOOST_TEST(dev.notified.empty());
}

BOOST_AUTO_TEST_CASE(interrupt_status_is_acknowledged_bit_by_bit) {
    t->signal_used_buffers();
    BOOST_TEST(rd(0x60) == virtio::interrupt_used_buffer);
    BOOST_TEST(irq.count == 1);
    wr(0x64, 2);
    BOOST_TEST(rd(0x60) == virtio::interrupt_used_buffer);
    wr(0x64, 1);
    BOOST_TEST(rd(0x60) == 0u);
}

BOOST_AUTO_TEST_CASE(interrupt_registers_served_off_the_strand_behave_as_the_register_file) {
    auto fast = [&](std::uint64_t off, bool is_write, std::uint32_t& v) {
        return t->access_interrupt_registers(off, is_write, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
    };
    t->signal_used_buffers();
    std::uint32_t v = 0;
    BOOST_TEST(fast(0x60, false, v));
    BOOST_TEST(v == virtio::interrupt_used_buffer);
    t->signal_used_buffers();  // not acknowledged yet: no second edge
    BOOST_TEST(irq.count == 1);
    std::uint32_t ack = virtio::interrupt_used_buffer;
    BOOST_TEST(fast(0x64, true, ack));
    BOOST_TEST(rd(0x60) == 0u);
    t->signal_used_buffers();  // acknowledged: the next one is a new edge
    BOOST_TEST(irq.count == 2);
    wr(0x64, virtio::interrupt_used_buffer);  // the strand's path clears it the same way
    BOOST_TEST(fast(0x60, false, v));
    BOOST_TEST(v == 0u);
}

BOOST_AUTO_TEST_CASE(only_interrupt_status_reads_and_ack_writes_are_served_off_the_strand) {
    negotiate();
    t->signal_used_buffers();
    std::uint32_t v = 1;
    auto fast = [&](std::uint64_t off, bool is_write) {
        return t->access_interrupt_registers(off, is_write, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
    };
    BOOST_TEST(!fast(0x60, true));   // InterruptStatus is read-only
    BOOST_TEST(!fast(0x64, false));  // InterruptACK is write-only
    BOOST_TEST(!fast(0x70, false));  // everything else needs the strand
    BOOST_TEST(!fast(0x50, true));
    BOOST_TEST(dev.notified.empty());
    std::uint16_t narrow = 1;
    BOOST_TEST(!t->access_interrupt_registers(0x64, true, std::span(reinterpret_cast<std::uint8_t*>(&narrow), 2)));
    BOOST_TEST(rd(0x60) == virtio::interrupt_used_buffer);  // none of those touched it
}

BOOST_AUTO_TEST_CASE(status_zero_resets_everything_and_bumps_generation) {
    negotiate();
    setup_queue(0, 8, 0x1000);
    auto gen = rd(0xfc);
    wr(0x70, 0);
    BOOST_TEST(rd(0x70) == 0u);
    BOOST_TEST(rd(0xfc) == gen + 1);
    wr(0x30, 0);
    BOOST_TEST(rd(0x44) == 0u);
    BOOST_TEST(dev.resets >= 1);
}

BOOST_AUTO_TEST_CASE(status_bits_cannot_be_cleared_except_by_reset) {
    negotiate();
    wr(0x70, st::acknowledge);
    BOOST_TEST((rd(0x70) & st::features_ok) != 0u);
}

BOOST_AUTO_TEST_CASE(narrow_or_unaligned_register_access_is_ignored) {
    std::uint8_t b = 0xff;
    t->read(0x000, std::span(&b, 1));
    BOOST_TEST(b == 0);
    std::uint16_t h = 0;
    t->write(0x070, std::span(reinterpret_cast<const std::uint8_t*>(&h), 2));
    wr(0x071, 1);
    BOOST_TEST(rd(0x70) == 0u);
}

// Found by fuzzing: a driver that wrote DEVICE_NEEDS_RESET itself kept the device active, and a
// later failure of the device could no longer deactivate it.
BOOST_AUTO_TEST_CASE(the_driver_cannot_set_device_needs_reset_itself) {
    const std::uint32_t up = bring_up();
    wr(0x70, up | st::device_needs_reset);
    BOOST_TEST((rd(0x70) & st::device_needs_reset) == 0u);
    BOOST_TEST(t->active());
    t->fail_device();  // the device's own failure still takes effect
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
    BOOST_TEST(!t->active());
}

// Found by fuzzing: a device that failed before DRIVER_OK was activated by it.
BOOST_AUTO_TEST_CASE(a_failed_device_stays_inactive_when_the_driver_sets_driver_ok) {
    negotiate();
    setup_queue(0, 8, 0x1000);
    setup_queue(1, 4, 0x3000);
    t->fail_device();  // the device reports a broken driver before DRIVER_OK
    BOOST_REQUIRE((rd(0x70) & st::device_needs_reset) != 0u);
    wr(0x70, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
    BOOST_TEST(!t->active());
    BOOST_TEST(dev.activations == 0);
    BOOST_TEST((rd(0x70) & st::device_needs_reset) != 0u);
    wr(0x70, 0);  // a reset clears it; the device can come up again
    bring_up();
    BOOST_TEST(t->active());
}

BOOST_AUTO_TEST_CASE(a_driver_that_sets_failed_stops_the_device) {
    const std::uint32_t up = bring_up();
    wr(0x70, up | st::failed);
    BOOST_TEST(!t->active());
    BOOST_TEST(dev.resets == 1);
    wr(0x50, 1);
    BOOST_TEST(dev.notified.empty());
}

BOOST_AUTO_TEST_SUITE_END()
