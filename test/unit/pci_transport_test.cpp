#include "virtio/pci_transport.hpp"

#define BOOST_TEST_MODULE pci_transport
#include <boost/test/unit_test.hpp>

#include "../support/fake_virtio_device.hpp"
#include "../support/little_endian.hpp"
#include "../support/mock_driver.hpp"

#include <optional>

using namespace mimobox;
namespace st = virtio::status;
using virtio::pci_transport;

namespace {

struct recorded_msi final : virtio::msi_sink {
    std::vector<std::pair<std::uint64_t, std::uint32_t>> messages;
    void signal(std::uint64_t address, std::uint32_t data) override { messages.emplace_back(address, data); }
};

constexpr pci_transport::placement where{0xd0000000, 0x6000};
// Common configuration offsets (struct virtio_pci_common_cfg).
constexpr std::uint64_t device_feature_select = 0x00, device_feature = 0x04, driver_feature_select = 0x08,
                        driver_feature = 0x0c, config_msix_vector = 0x10, num_queues = 0x12, device_status = 0x14,
                        queue_select = 0x16, queue_size = 0x18, queue_msix_vector = 0x1a, queue_enable = 0x1c,
                        queue_notify_off = 0x1e, queue_desc = 0x20, queue_driver = 0x28, queue_device = 0x30;

struct fixture {
    memory::guest_memory mem;
    test::fake_virtio_device dev;
    recorded_msi msi;
    std::optional<pci_transport> t;
    fixture() {
        BOOST_REQUIRE(!mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(1u << 20).value()));
        t.emplace(dev, mem, msi, where);
    }
    std::uint64_t cfg(std::uint32_t off, std::size_t width = 4) {
        std::array<std::uint8_t, 8> b{};
        t->config_read(off, std::span(b).first(width));
        return test::le_value(std::span(b).first(width));
    }
    void set_cfg(std::uint32_t off, std::uint64_t v, std::size_t width = 4) {
        const auto b = test::le_bytes(v);
        t->config_write(off, std::span(b).first(width));
    }
    std::uint64_t rd(std::uint64_t off, std::size_t width) {
        std::array<std::uint8_t, 8> b{};
        t->registers().read(off, std::span(b).first(width));
        return test::le_value(std::span(b).first(width));
    }
    void wr(std::uint64_t off, std::uint64_t v, std::size_t width) {
        const auto b = test::le_bytes(v);
        t->registers().write(off, std::span(b).first(width));
    }
    void notify(std::uint64_t port_offset, std::uint16_t value) {
        const auto b = test::le_bytes(value);
        t->notifications().write(port_offset, std::span(b).first(2));
    }
    // The capability of `id` (and, for vendor capabilities, virtio cfg_type), or 0.
    std::uint32_t find_cap(std::uint8_t id, std::uint8_t type = 0) {
        for (std::uint32_t at = cfg(0x34, 1); at; at = cfg(at + 1, 1))
            if (cfg(at, 1) == id && (id != 0x09 || cfg(at + 3, 1) == type)) return at;
        return 0;
    }
    void negotiate(std::uint64_t features = virtio::feature_version_1) {
        wr(device_status, st::acknowledge, 1);
        wr(device_status, st::acknowledge | st::driver, 1);
        wr(driver_feature_select, 0, 4);
        wr(driver_feature, static_cast<std::uint32_t>(features), 4);
        wr(driver_feature_select, 1, 4);
        wr(driver_feature, static_cast<std::uint32_t>(features >> 32), 4);
        wr(device_status, st::acknowledge | st::driver | st::features_ok, 1);
    }
    void setup_queue(std::uint16_t index, std::uint16_t size, std::uint64_t base, std::uint16_t vector) {
        test::mock_driver layout_only(mem, size, base, 0x80000);
        auto& l = layout_only.layout();
        wr(queue_select, index, 2);
        wr(queue_size, size, 2);
        wr(queue_desc, l.desc, 4);  // as Linux does: two 32-bit halves
        wr(queue_desc + 4, l.desc >> 32, 4);
        wr(queue_driver, l.driver, 8);
        wr(queue_device, l.device, 8);
        wr(queue_msix_vector, vector, 2);
        wr(queue_enable, 1, 2);
    }
    void enable_msix(std::uint16_t control = 0x8000) {
        set_cfg(find_cap(0x11) + 2, control, 2);
        for (std::uint64_t v = 0; v < pci_transport::msix_vectors; ++v) {
            const std::uint64_t entry = pci_transport::msix_table_offset + 16 * v;
            wr(entry, 0xfee00000 + v, 4);
            wr(entry + 4, 0, 4);
            wr(entry + 8, 0x40 + v, 4);
            wr(entry + 12, 0, 4);  // unmasked
        }
    }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(pci, fixture)

BOOST_AUTO_TEST_CASE(configuration_space_describes_a_modern_virtio_function_with_its_capabilities) {
    BOOST_TEST(cfg(0x00, 2) == 0x1af4u);
    BOOST_TEST(cfg(0x02, 2) == 0x1040u + 19);
    BOOST_TEST(cfg(0x08, 1) == 1u);  // revision 1: modern only
    BOOST_TEST((cfg(0x06, 2) & 0x10) != 0u);
    BOOST_TEST(cfg(0x3d, 1) == 0u);  // no INTx pin
    struct expected { std::uint8_t type, bar; std::uint32_t offset; };
    for (auto e : {expected{1, 0, pci_transport::common_offset}, expected{2, 2, 0}, expected{3, 0, pci_transport::isr_offset},
                   expected{4, 0, pci_transport::device_offset}}) {
        const auto at = find_cap(0x09, e.type);
        BOOST_TEST_REQUIRE(at != 0u);
        BOOST_TEST(cfg(at + 4, 1) == e.bar);
        BOOST_TEST(cfg(at + 8) == e.offset);
    }
    BOOST_TEST(cfg(find_cap(0x09, 2) + 16) == pci_transport::notify_multiplier);
    const auto msix = find_cap(0x11);
    BOOST_TEST_REQUIRE(msix != 0u);
    BOOST_TEST((cfg(msix + 2, 2) & 0x7ff) == pci_transport::msix_vectors - 1u);
    BOOST_TEST(cfg(msix + 4) == pci_transport::msix_table_offset);  // BIR 0
    BOOST_TEST(rd(pci_transport::device_offset, 4) == 0xa3a2a1a0u);
}

BOOST_AUTO_TEST_CASE(bar_sizing_reads_the_size_and_the_fixed_address_comes_back) {
    BOOST_TEST(cfg(0x10) == 0xd0000000u);
    set_cfg(0x10, 0xffffffff);
    BOOST_TEST(cfg(0x10) == ~std::uint32_t(pci_transport::registers_size - 1));
    set_cfg(0x10, 0xd0000000);
    BOOST_TEST(cfg(0x10) == 0xd0000000u);
    set_cfg(0x18, 0xffffffff);
    BOOST_TEST(cfg(0x18) == (~std::uint32_t(pci_transport::notify_ports - 1) | 1u));
    set_cfg(0x18, 0x7001);  // a move: not supported, the VMM's placement stays
    BOOST_TEST(cfg(0x18) == 0x6001u);
}

BOOST_AUTO_TEST_CASE(full_handshake_activates_the_device_and_port_writes_notify_queues) {
    wr(device_feature_select, 1, 4);
    BOOST_TEST(rd(device_feature, 4) == 1u);  // VERSION_1 is bit 32
    BOOST_TEST(rd(num_queues, 2) == 2u);
    wr(queue_select, 1, 2);
    BOOST_TEST(rd(queue_size, 2) == 8u);  // the maximum until the driver writes its own
    BOOST_TEST(rd(queue_notify_off, 2) == 1u);
    negotiate(virtio::feature_version_1 | 1);
    BOOST_TEST((rd(device_status, 1) & st::features_ok) != 0u);
    setup_queue(0, 8, 0x1000, 1);
    setup_queue(1, 4, 0x3000, 1);
    BOOST_TEST(rd(queue_enable, 2) == 1u);
    BOOST_TEST(rd(queue_desc, 8) != 0u);
    wr(device_status, st::acknowledge | st::driver | st::features_ok | st::driver_ok, 1);
    BOOST_TEST(dev.activations == 1);
    BOOST_TEST(dev.activated_queues == 2u);
    notify(2, 1);  // queue 1's port, its index
    notify(2, 0);  // the wrong index for that port
    notify(1, 0);  // not a queue's port
    BOOST_TEST(dev.notified == std::vector<std::size_t>{1});
    BOOST_TEST(t->notify_port(1) == 0x6002);
}

BOOST_AUTO_TEST_CASE(a_bad_queue_fails_the_device_and_sends_the_configuration_vector) {
    enable_msix();
    wr(config_msix_vector, 0, 2);
    negotiate();
    setup_queue(0, 16, 0x1000, 1);  // the maximum is 8
    BOOST_TEST((rd(device_status, 1) & st::device_needs_reset) != 0u);
    BOOST_TEST(rd(queue_enable, 2) == 0u);
    BOOST_TEST_REQUIRE(msi.messages.size() == 1u);
    BOOST_TEST(msi.messages[0].first == 0xfee00000u);
    BOOST_TEST(msi.messages[0].second == 0x40u);
    BOOST_TEST(rd(pci_transport::isr_offset, 1) == virtio::interrupt_config_change);
    BOOST_TEST(rd(pci_transport::isr_offset, 1) == 0u);  // reading cleared it
}

BOOST_AUTO_TEST_CASE(used_buffers_send_one_message_per_vector_and_none_without_msix) {
    negotiate();
    setup_queue(0, 8, 0x1000, 1);
    setup_queue(1, 8, 0x3000, 1);
    t->signal_used_buffers();
    BOOST_TEST(msi.messages.empty());  // MSI-X off: there is no other interrupt
    enable_msix();
    t->signal_used_buffers();
    t->resignal_used_buffers();
    BOOST_TEST_REQUIRE(msi.messages.size() == 2u);  // both queues share vector 1: one each time
    BOOST_TEST(msi.messages[0].first == 0xfee00001u);
    BOOST_TEST(msi.messages[0].second == 0x41u);
    BOOST_TEST(t->messages_sent() == 2u);
}

BOOST_AUTO_TEST_CASE(masked_vectors_hold_their_message_as_pending_until_unmasked) {
    negotiate();
    setup_queue(0, 8, 0x1000, 1);
    enable_msix();
    const std::uint64_t entry1 = pci_transport::msix_table_offset + 16;
    wr(entry1 + 12, 1, 4);
    t->signal_used_buffers();
    BOOST_TEST(msi.messages.empty());
    BOOST_TEST(rd(pci_transport::msix_pba_offset, 8) == 2u);
    wr(entry1 + 12, 0, 4);
    BOOST_TEST(msi.messages.size() == 1u);
    BOOST_TEST(rd(pci_transport::msix_pba_offset, 8) == 0u);
    // The function mask holds every vector the same way.
    set_cfg(find_cap(0x11) + 2, 0xc000, 2);
    t->signal_used_buffers();
    BOOST_TEST(msi.messages.size() == 1u);
    set_cfg(find_cap(0x11) + 2, 0x8000, 2);
    BOOST_TEST(msi.messages.size() == 2u);
    BOOST_TEST(t->messages_held() == 2u);
}

BOOST_AUTO_TEST_CASE(vectors_beyond_the_table_read_back_as_no_vector) {
    wr(config_msix_vector, pci_transport::msix_vectors, 2);
    BOOST_TEST(rd(config_msix_vector, 2) == pci_transport::no_vector);
    wr(queue_select, 0, 2);
    wr(queue_msix_vector, 7, 2);
    BOOST_TEST(rd(queue_msix_vector, 2) == pci_transport::no_vector);
    wr(queue_select, 5, 2);  // no such queue
    BOOST_TEST(rd(queue_msix_vector, 2) == pci_transport::no_vector);
    BOOST_TEST(rd(queue_size, 2) == 0u);
}

BOOST_AUTO_TEST_CASE(reset_restores_default_sizes_and_forgets_vectors) {
    negotiate();
    setup_queue(0, 4, 0x1000, 1);
    wr(config_msix_vector, 0, 2);
    wr(device_status, 0, 1);
    BOOST_TEST(rd(device_status, 1) == 0u);
    BOOST_TEST(dev.resets == 1);
    wr(queue_select, 0, 2);
    BOOST_TEST(rd(queue_size, 2) == 8u);
    BOOST_TEST(rd(queue_enable, 2) == 0u);
    BOOST_TEST(rd(queue_msix_vector, 2) == pci_transport::no_vector);
    BOOST_TEST(rd(config_msix_vector, 2) == pci_transport::no_vector);
}

BOOST_AUTO_TEST_CASE(accesses_of_the_wrong_width_or_place_change_nothing) {
    BOOST_TEST(rd(device_feature, 2) == 0u);  // a 32-bit field read as 16 bits
    wr(device_status, st::acknowledge, 4);    // an 8-bit field written as 32 bits
    BOOST_TEST(rd(device_status, 1) == 0u);
    wr(pci_transport::msix_table_offset + 2, 0xffffffff, 4);  // unaligned table write
    BOOST_TEST(rd(pci_transport::msix_table_offset, 4) == 0u);
    wr(pci_transport::msix_table_offset + 16 * pci_transport::msix_vectors, 1, 4);  // past the table
    BOOST_TEST(rd(pci_transport::registers_size - 4, 4) == 0u);
    set_cfg(0x00, 0x12345678);  // identity registers are read-only
    BOOST_TEST(cfg(0x00, 2) == 0x1af4u);
    negotiate();
    wr(queue_select, 0, 2);
    wr(queue_size, 4, 1);  // a 16-bit field written as 8 bits
    BOOST_TEST(rd(queue_size, 2) == 8u);
}

BOOST_AUTO_TEST_CASE(saved_state_restores_an_active_function_with_its_msix_table_and_pending_vector) {
    negotiate();
    setup_queue(0, 4, 0x1000, 1);
    setup_queue(1, 4, 0x2000, 1);
    wr(config_msix_vector, 0, 2);
    enable_msix();
    const auto all = st::acknowledge | st::driver | st::features_ok | st::driver_ok;
    wr(device_status, all, 1);
    BOOST_REQUIRE(dev.activations == 1);
    const std::uint64_t entry1 = pci_transport::msix_table_offset + 16;
    wr(entry1 + 12, 1, 4);  // vector 1 masked: the next interrupt stays pending
    t->signal_used_buffers();
    BOOST_REQUIRE(msi.messages.empty());

    snapshot::state_writer out;
    t->save(out);
    fixture restored;
    snapshot::state_reader in(out.data());
    BOOST_TEST(!restored.t->restore(in));
    BOOST_TEST(in.at_end());
    BOOST_TEST(restored.dev.activations == 1);
    BOOST_TEST(restored.dev.activated_queues == 2u);
    BOOST_TEST(restored.rd(device_status, 1) == all);
    BOOST_TEST(restored.rd(pci_transport::msix_pba_offset, 8) == 2u);
    snapshot::state_writer again;
    restored.t->save(again);
    BOOST_TEST(again.data() == out.data());
    // Unmasking the vector on the restored function delivers the held message as saved.
    restored.wr(entry1 + 12, 0, 4);
    BOOST_REQUIRE(restored.msi.messages.size() == 1u);
    BOOST_TEST(restored.msi.messages[0].first == 0xfee00001u);
    BOOST_TEST(restored.msi.messages[0].second == 0x41u);
}

BOOST_AUTO_TEST_CASE(a_saved_state_cut_short_or_out_of_memory_is_refused) {
    negotiate();
    setup_queue(0, 4, 0x1000, 1);
    setup_queue(1, 4, 0x2000, 1);
    wr(device_status, st::acknowledge | st::driver | st::features_ok | st::driver_ok, 1);
    snapshot::state_writer out;
    t->save(out);
    const auto bytes = out.take();
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        fixture f;
        snapshot::state_reader in{std::span(bytes).first(cut)};
        BOOST_TEST((f.t->restore(in) == vm::snapshot_errc::corrupt_state));
        BOOST_TEST(f.dev.activations == 0);
    }
    // Queue 1's descriptor table moved past guest memory (1 MiB): the rings are checked again.
    auto moved = bytes;
    const std::uint64_t desc = 0x2000, outside = 0x200000;
    bool found = false;
    for (std::size_t i = 0; i + 8 <= moved.size() && !found; ++i)
        if (test::le_value(std::span(moved).subspan(i, 8)) == desc) {
            const auto b = test::le_bytes(outside);
            std::copy(b.begin(), b.end(), moved.begin() + static_cast<std::ptrdiff_t>(i));
            found = true;
        }
    BOOST_REQUIRE(found);
    fixture f;
    snapshot::state_reader in(moved);
    BOOST_TEST((f.t->restore(in) == vm::snapshot_errc::corrupt_state));
    BOOST_TEST(f.dev.activations == 0);
}

BOOST_AUTO_TEST_SUITE_END()
