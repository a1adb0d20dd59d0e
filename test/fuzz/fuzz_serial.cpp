// libFuzzer: a hostile guest driving the 16550 UART model (devices/serial) through the port
// bus at COM1 (0x3f8, 8 ports), with an output sink and an interrupt line that record what
// they get. Feeds: the first byte picks the flow control (none or RTS); then a list of
// operations, each an opcode byte and operands: port reads and writes at any of the UART's
// registers (and around them, straddling the range's ends) with widths 1/2/4 and input-chosen
// values, so DLAB, divisor latches, IER, FCR, LCR, MCR (RTS, loopback), SCR, THR and RBR are all
// reached in any order; host-side input queued for the guest (up to past the queue's capacity);
// interrupt re-raises.
// Invariants (a violation is __builtin_trap()), against a small model of the registers:
//   - no crash or sanitizer report;
//   - LSR always says the transmitter is empty and says data ready exactly when the guest may
//     read input (queued, and RTS up when flow control is on); IIR has the FIFO bits and one
//     of no interrupt / THRE / RDA, RDA only when enabled and data is ready; MSR is fixed;
//   - LCR, SCR, MCR (5 bits), IER (4 bits) and the divisor latches read back what was written;
//   - RBR yields the queued bytes in order, then 0; every THR write (DLAB clear) goes to the
//     sink, or back into the input in loopback mode; the input never exceeds its capacity and
//     the drained callback runs when the guest reads the last byte;
//   - the bytes of a wider access above the first read as zero.
#include "devices/bus.hpp"
#include "devices/serial.hpp"

#include "fuzz_input.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <vector>

using namespace mimobox;
using fuzz::check;

namespace {

constexpr std::uint64_t com1 = 0x3f8;

struct counting_irq final : devices::interrupt_line {
    std::uint64_t edges = 0;
    void trigger() override { ++edges; }
};

struct model {
    bool rts_flow = false;
    std::uint8_t ier = 0, lcr = 0x03, mcr = 0x08, scr = 0, dll = 0x0c, dlh = 0;
    std::deque<std::uint8_t> input;
    std::deque<std::uint8_t> output;  // what the sink should have received
    bool dlab() const { return lcr & 0x80; }
    bool visible() const { return !input.empty() && (!rts_flow || (mcr & 0x02)); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    fuzz::input in(data, size);
    model m;
    m.rts_flow = in.u8() & 1;
    counting_irq irq;
    std::deque<std::uint8_t> sunk;
    std::uint64_t drained = 0, drained_expected = 0;
    devices::serial uart(irq, [&](std::uint8_t b) { sunk.push_back(b); },
                         m.rts_flow ? devices::serial::flow_control::rts : devices::serial::flow_control::none);
    uart.on_input_drained([&] { ++drained; });
    devices::bus pio;
    if (!pio.add(com1, 8, uart)) fuzz::violated();

    for (int ops = 0; !in.done() && ops < 2048; ++ops) {
        const std::uint8_t op = in.u8();
        switch (op % 4) {
        case 0: {  // a register write
            const std::size_t width = op & 0x80 ? in.width(true) : 1;
            const std::uint64_t port = op & 0x40 ? com1 - 2 + in.u8() % 12 : com1 + in.u8() % 8;
            const std::uint64_t v = in.value(width);
            pio.write(port, fuzz::access_bytes(v, width).span());
            if (port < com1 || port + width > com1 + 8) break;  // the bus drops it
            const auto b = static_cast<std::uint8_t>(v);
            switch (port - com1) {
            case 0:
                if (m.dlab()) m.dll = b;
                else if (m.mcr & 0x10) {
                    if (m.input.size() < devices::serial::input_capacity) m.input.push_back(b);
                } else {
                    m.output.push_back(b);
                }
                break;
            case 1: (m.dlab() ? m.dlh : m.ier) = m.dlab() ? b : b & 0x0f; break;
            case 3: m.lcr = b; break;
            case 4: m.mcr = b & 0x1f; break;
            case 7: m.scr = b; break;
            default: break;
            }
            break;
        }
        case 1: {  // a register read
            const std::size_t width = op & 0x80 ? in.width(true) : 1;
            const std::uint64_t port = op & 0x40 ? com1 - 2 + in.u8() % 12 : com1 + in.u8() % 8;
            std::uint8_t b[4];
            std::memset(b, 0x5a, sizeof b);
            const bool visible = m.visible();
            pio.read(port, std::span(b, width));
            if (port < com1 || port + width > com1 + 8) {
                for (std::size_t i = 0; i < width; ++i) check(b[i] == 0xff);
                break;
            }
            for (std::size_t i = 1; i < width; ++i) check(b[i] == 0);
            switch (port - com1) {
            case 0:
                if (m.dlab()) {
                    check(b[0] == m.dll);
                } else if (visible) {
                    check(b[0] == m.input.front());
                    m.input.pop_front();
                    if (m.input.empty()) ++drained_expected;
                } else {
                    check(b[0] == 0);
                }
                break;
            case 1: check(b[0] == (m.dlab() ? m.dlh : m.ier)); break;
            case 2: {
                check((b[0] & 0xc0) == 0xc0);
                const std::uint8_t id = b[0] & 0x3f;
                check(id == 0x01 || id == 0x02 || id == 0x04);
                if (id == 0x04) check((m.ier & 0x01) && visible);
                if (id == 0x02) check(m.ier & 0x02);
                if ((m.ier & 0x01) && visible) check(id == 0x04);
                break;
            }
            case 3: check(b[0] == m.lcr); break;
            case 4: check(b[0] == m.mcr); break;
            case 5: check(b[0] == (0x60 | (visible ? 1 : 0))); break;
            case 6: check(b[0] == 0xb0); break;
            case 7: check(b[0] == m.scr); break;
            }
            break;
        }
        case 2: {  // the host queues input for the guest
            std::size_t n = in.u8();
            std::vector<std::uint8_t> bytes;
            if (op & 0x80) bytes.assign(devices::serial::input_capacity - m.input.size() + n, 0x55);  // fill it up and more
            else {
                auto s = in.bytes(n);
                bytes.assign(s.begin(), s.end());
            }
            const std::size_t room = devices::serial::input_capacity - m.input.size();
            check(uart.input_room() == room);
            const std::size_t taken = uart.enqueue_input(bytes);
            check(taken == std::min(room, bytes.size()));
            m.input.insert(m.input.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(taken));
            break;
        }
        case 3:
            uart.reraise_interrupt();
            (void)uart.describe();
            break;
        }
        check(sunk == m.output);
        sunk.clear();
        m.output.clear();
        check(uart.input_room() == devices::serial::input_capacity - m.input.size());
        check(uart.input_pending() == m.visible());
        check(drained == drained_expected);
    }
    return 0;
}
