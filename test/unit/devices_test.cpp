#include "devices/serial.hpp"

#define BOOST_TEST_MODULE devices
#include <boost/test/unit_test.hpp>

#include "devices/bus.hpp"
#include "devices/i8042.hpp"
#include "mimobox/vm/kvm_lifecycle.hpp"
#include "vmm/console_log.hpp"

#include <string>

using namespace mimobox;
using namespace mimobox::devices;

namespace {
struct counting_irq final : interrupt_line {
    int count = 0;
    void trigger() override { ++count; }
};
std::uint8_t rd(bus_device& d, std::uint64_t off) {
    std::uint8_t v = 0;
    d.read(off, std::span(&v, 1));
    return v;
}
void wr(bus_device& d, std::uint64_t off, std::uint8_t v) { d.write(off, std::span<const std::uint8_t>(&v, 1)); }
}  // namespace

BOOST_AUTO_TEST_CASE(serial_reads_back_ier_as_linux_autoconfig_expects) {
    counting_irq irq;
    serial uart(irq, nullptr);
    wr(uart, 1, 0x00);
    BOOST_TEST(rd(uart, 1) == 0x00);
    wr(uart, 1, 0x0f);
    BOOST_TEST(rd(uart, 1) == 0x0f);
    wr(uart, 1, 0xff);
    BOOST_TEST(rd(uart, 1) == 0x0f);  // upper bits do not exist
}

BOOST_AUTO_TEST_CASE(serial_transmits_to_sink_and_raises_thre_when_enabled) {
    counting_irq irq;
    std::string out;
    serial uart(irq, [&](std::uint8_t b) { out.push_back(static_cast<char>(b)); });
    wr(uart, 0, 'h');
    BOOST_TEST(irq.count == 0);  // THRE interrupt not enabled
    wr(uart, 1, 0x02);
    BOOST_TEST(irq.count == 1);  // enabling THRE with an empty transmitter raises it
    BOOST_TEST((rd(uart, 2) & 0x0f) == 0x02);
    BOOST_TEST((rd(uart, 2) & 0x0f) == 0x01);  // reading IIR acknowledged it
    wr(uart, 0, 'i');
    BOOST_TEST(irq.count == 2);
    BOOST_TEST(out == "hi");
    BOOST_TEST((rd(uart, 5) & 0x60) == 0x60);
}

BOOST_AUTO_TEST_CASE(serial_divisor_latch_does_not_transmit) {
    counting_irq irq;
    std::string out;
    serial uart(irq, [&](std::uint8_t b) { out.push_back(static_cast<char>(b)); });
    wr(uart, 3, 0x80);
    wr(uart, 0, 0x01);
    wr(uart, 1, 0x00);
    BOOST_TEST(rd(uart, 0) == 0x01);
    wr(uart, 3, 0x03);
    BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_CASE(serial_input_is_bounded_and_signals_data_ready) {
    counting_irq irq;
    serial uart(irq, nullptr);
    wr(uart, 1, 0x01);
    std::vector<std::uint8_t> big(serial::input_capacity + 10, 'x');
    BOOST_TEST(uart.enqueue_input(big) == serial::input_capacity);
    BOOST_TEST(irq.count >= 1);
    BOOST_TEST((rd(uart, 5) & 0x01) == 0x01);
    BOOST_TEST((rd(uart, 2) & 0x0f) == 0x04);
    BOOST_TEST(rd(uart, 0) == 'x');
}

BOOST_AUTO_TEST_CASE(serial_with_rts_flow_control_hides_input_until_the_guest_raises_rts) {
    counting_irq irq;
    serial uart(irq, nullptr, serial::flow_control::rts);
    int drained = 0;
    uart.on_input_drained([&] { ++drained; });
    wr(uart, 1, 0x01);  // receive interrupts on
    const std::uint8_t two[] = {'a', 'b'};
    BOOST_TEST(uart.enqueue_input(two) == 2u);
    BOOST_TEST(irq.count == 0);             // RTS low (port not opened, or throttled)
    BOOST_TEST((rd(uart, 5) & 0x01) == 0);  // no data ready
    BOOST_TEST(rd(uart, 0) == 0);           // and nothing is consumed
    wr(uart, 4, 0x0a);                      // OUT2 | RTS
    BOOST_TEST(irq.count == 1);
    BOOST_TEST((rd(uart, 5) & 0x01) == 0x01);
    BOOST_TEST(rd(uart, 0) == 'a');
    wr(uart, 4, 0x08);  // throttled again: the rest waits
    BOOST_TEST((rd(uart, 5) & 0x01) == 0);
    wr(uart, 4, 0x0a);
    BOOST_TEST(drained == 0);
    BOOST_TEST(rd(uart, 0) == 'b');
    BOOST_TEST(drained == 1);
    BOOST_TEST(uart.input_room() == serial::input_capacity);
}

BOOST_AUTO_TEST_CASE(i8042_reset_command_calls_back_and_status_never_busy) {
    int resets = 0;
    i8042 kbd([&] { ++resets; });
    BOOST_TEST((rd(kbd, 4) & 0x02) == 0);
    wr(kbd, 4, 0xfe);
    BOOST_TEST(resets == 1);
    wr(kbd, 4, 0x20);  // read command byte
    BOOST_TEST((rd(kbd, 4) & 0x01) == 0x01);
    BOOST_TEST(rd(kbd, 0) == 0x45);
}

BOOST_AUTO_TEST_CASE(bus_rejects_overlap_and_reads_ones_where_nothing_is) {
    counting_irq irq;
    serial uart(irq, nullptr);
    bus pio;
    BOOST_TEST(pio.add(0x3f8, 8, uart));
    BOOST_TEST(!pio.add(0x3fc, 8, uart));
    BOOST_TEST(!pio.add(0x10, 0, uart));
    std::uint8_t v[2] = {0, 0};
    BOOST_TEST(!pio.read(0x2f8, std::span(v, 1)));
    BOOST_TEST(v[0] == 0xff);
    // An access straddling the end of a device is not routed to it.
    BOOST_TEST(!pio.read(0x3ff, std::span(v, 2)));
    BOOST_TEST(pio.read(0x3fd, std::span(v, 1)));
}

BOOST_AUTO_TEST_CASE(lifecycle_table_allows_only_documented_moves) {
    using enum vm::kvm_lifecycle;
    BOOST_TEST(vm::is_valid_transition(created, booting));
    BOOST_TEST(vm::is_valid_transition(running, pausing));
    BOOST_TEST(vm::is_valid_transition(paused, running));
    BOOST_TEST(!vm::is_valid_transition(created, running));
    BOOST_TEST(!vm::is_valid_transition(running, running));
    BOOST_TEST(!vm::is_valid_transition(stopped, booting));
    BOOST_TEST(!vm::is_valid_transition(paused, pausing));
}

BOOST_AUTO_TEST_CASE(console_log_keeps_tail_and_finds_text_across_appends) {
    vmm::console_log log(16);
    log.append("hello ");
    log.append("wor");
    BOOST_TEST(!log.contains_since("world", 0));
    auto before = log.total();
    log.append("ld\n");
    BOOST_TEST(log.contains_since("world", before));
    for (int i = 0; i < 10; ++i) log.append("0123456789");
    BOOST_TEST(log.contents().size() == 16u);
    BOOST_TEST(log.total() == 12u + 100u);
    BOOST_TEST(log.contents() == "4567890123456789");
    log.append("\nlast line\n");
    BOOST_TEST(log.tail_lines(1) == "last line\n");
}
