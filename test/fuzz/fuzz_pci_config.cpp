// libFuzzer: a hostile guest's PCI configuration mechanism 1 accesses (devices/pci_host) on the
// port bus, ports 0xcf8-0xcff and around them, with 1/2/4-byte widths. Behind the host bridge:
// slot 1 a virtio-pci transport (fake device) and slot 2 a function with a plain 256-byte
// register file, each wrapped in a checker; every other slot is empty. Feeds: a list of
// operations, each an opcode byte and operands: address latch writes (well-formed for a chosen
// slot and register, or any 32-bit value), data port reads and writes at any offset and width,
// raw accesses to any of the ports (including partial latch accesses and accesses straddling
// the end of the range), and BAR sizing sequences (all ones, read the mask, restore).
// Invariants (a violation is __builtin_trap()):
//   - no crash or sanitizer report;
//   - a function is only ever called with a width of 1, 2 or 4, an offset aligned to it and
//     the access inside its 256 bytes, and only for the function the latch selects (enable
//     bit set, bus 0, function 0, its slot), at the register the latch and port say;
//   - the latch reads back exactly what was last written to it as a 32-bit access; other
//     reads of 0xcf8-0xcfb, reads with the latch disabled, of absent slots or functions, or
//     unaligned, return all ones;
//   - the host bridge answers its fixed identity; slot 2 reads back what was written to it;
//   - the transport's identity is fixed, its BARs read their placement, or the size mask
//     right after an all-ones write, and its command register reads back what was written.
#include "devices/bus.hpp"
#include "devices/pci_host.hpp"
#include "virtio/pci_transport.hpp"

#include "../support/fake_virtio_device.hpp"
#include "fuzz_input.hpp"

#include <array>
#include <cstring>

using namespace mimobox;
using fuzz::check;
using pci = virtio::pci_transport;

namespace {

constexpr std::uint16_t cf8 = devices::pci_host::port_base;
constexpr pci::placement at{0xd0000000, 0x6000};

struct null_msi final : virtio::msi_sink {
    void signal(std::uint64_t, std::uint32_t) override {}
};

/// Forwards to the real function after checking pci_host kept the pci_function contract;
/// remembers the last access for the harness.
struct checker final : devices::pci_function {
    devices::pci_function& inner;
    std::uint64_t calls = 0;
    std::uint32_t last_offset = 0;
    explicit checker(devices::pci_function& f) : inner(f) {}
    void contract(std::uint32_t offset, std::size_t width) {
        check(width == 1 || width == 2 || width == 4);
        check(offset % width == 0 && offset + width <= 256);
        ++calls;
        last_offset = offset;
    }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override {
        contract(offset, data.size());
        inner.config_read(offset, data);
    }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        contract(offset, data.size());
        inner.config_write(offset, data);
    }
};

/// 256 bytes of plain registers.
struct register_file final : devices::pci_function {
    std::array<std::uint8_t, 256> space{};
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override {
        std::memcpy(data.data(), space.data() + offset, data.size());
    }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        std::memcpy(space.data() + offset, data.data(), data.size());
    }
};

struct rig {
    memory::guest_memory mem;  // empty: configuration space never touches guest RAM
    null_msi msi;
    test::fake_virtio_device dev;
    pci transport{dev, mem, msi, at};
    register_file regs;
    checker slot1{transport}, slot2{regs};
    devices::pci_host host;
    devices::bus pio;

    // The harness's model of what the guest should see.
    std::uint32_t latch = 0;
    std::array<std::uint8_t, 256> shadow{};  // slot 2's registers
    bool sizing_bar0 = false, sizing_bar2 = false;
    std::uint16_t command = 0;

    rig() {
        if (!host.add(1, slot1) || !host.add(2, slot2) || host.add(2, slot2) || host.add(0, slot2) ||
            host.add(devices::pci_host::max_devices, slot2) || !pio.add(cf8, devices::pci_host::port_count, host))
            fuzz::violated();
    }

    /// The slot the latch selects and the register a data-port access at `data_offset` of
    /// `width` reaches, or -1 when nothing answers.
    int target(std::uint64_t data_offset, std::size_t width, std::uint32_t& reg) const {
        if (!(latch & 0x80000000u) || ((latch >> 16) & 0xff) || ((latch >> 8) & 7)) return -1;
        reg = (latch & 0xfc) + static_cast<std::uint32_t>(data_offset);
        if (reg % width) return -1;
        const int s = (latch >> 11) & 0x1f;
        return s <= 2 ? s : -1;
    }

    void write_port(std::uint64_t port, std::size_t width, std::uint64_t v) {
        const auto calls1 = slot1.calls, calls2 = slot2.calls;
        pio.write(port, fuzz::access_bytes(v, width).span());
        const bool inside = port >= cf8 && port + width <= cf8 + 8u;
        std::uint32_t reg = 0;
        const int s = inside && port >= cf8 + 4u ? target(port - cf8 - 4, width, reg) : -1;
        if (inside && port == cf8 && width == 4) latch = static_cast<std::uint32_t>(v);
        check(slot1.calls == calls1 + (s == 1) && slot2.calls == calls2 + (s == 2));
        if (s == 1) {
            check(slot1.last_offset == reg);
            if (reg == 0x04 && width >= 2) command = static_cast<std::uint16_t>(v);
            if (reg == 0x10 && width == 4) sizing_bar0 = v == 0xffffffffu;
            if (reg == 0x18 && width == 4) sizing_bar2 = v == 0xffffffffu;
        }
        if (s == 2) {
            check(slot2.last_offset == reg);
            for (std::size_t i = 0; i < width; ++i) shadow[reg + i] = static_cast<std::uint8_t>(v >> (8 * i));
        }
    }

    std::uint64_t read_port(std::uint64_t port, std::size_t width) {
        const auto calls1 = slot1.calls, calls2 = slot2.calls;
        std::uint8_t b[4];
        std::memset(b, 0x5a, sizeof b);
        pio.read(port, std::span(b, width));
        const std::uint64_t v = fuzz::load_le(std::span(b, width));
        const std::uint64_t ones = (1ull << (8 * width)) - 1;
        const bool inside = port >= cf8 && port + width <= cf8 + 8u;
        std::uint32_t reg = 0;
        const int s = inside && port >= cf8 + 4u ? target(port - cf8 - 4, width, reg) : -1;
        check(slot1.calls == calls1 + (s == 1) && slot2.calls == calls2 + (s == 2));
        if (inside && port < cf8 + 4u) {
            check(v == (port == cf8 && width == 4 ? latch : ones));
        } else if (s < 0) {
            check(v == ones);
        } else if (s == 0) {  // the host bridge: Red Hat 1b36:0008, class 06/00
            static constexpr std::uint8_t id[16] = {0x36, 0x1b, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0x06, 0, 0, 0, 0};
            for (std::size_t i = 0; i < width; ++i)
                check(static_cast<std::uint8_t>(v >> (8 * i)) == (reg + i < 16 ? id[reg + i] : 0));
        } else if (s == 2) {
            for (std::size_t i = 0; i < width; ++i) check(static_cast<std::uint8_t>(v >> (8 * i)) == shadow[reg + i]);
        } else {
            check(slot1.last_offset == reg);
            auto whole = [&](std::uint32_t r, std::size_t w) { return reg == r && width == w; };
            if (whole(0x00, 4)) check(v == ((0x1040u + dev.device_id()) << 16 | 0x1af4u));
            if (whole(0x04, 2)) check(v == command);
            if (whole(0x10, 4)) check(v == (sizing_bar0 ? ~std::uint32_t(pci::registers_size - 1) : at.registers));
            if (whole(0x18, 4)) check(v == (sizing_bar2 ? ~std::uint32_t(pci::notify_ports - 1) | 1u : at.notify | 1u));
        }
        return v;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    rig r;
    for (int ops = 0; !in.done() && ops < 1024; ++ops) {
        const std::uint8_t op = in.u8();
        switch (op % 5) {
        case 0: {  // the latch: well formed, or any value
            std::uint32_t v;
            if (op & 0x80) {
                v = in.u32();
            } else {
                const std::uint8_t slot = in.u8() % 4, reg = in.u8();
                v = 0x80000000u | std::uint32_t(slot) << 11 | reg;
                if (op & 0x40) v |= std::uint32_t(in.u8()) << 16 | std::uint32_t(in.u8() & 7) << 8;  // bus, function
            }
            r.write_port(cf8, 4, v);
            break;
        }
        case 1: {  // a data port write
            const std::size_t width = in.width(true);
            r.write_port(cf8 + 4 + in.u8() % 4, width, in.value(width));
            break;
        }
        case 2: {  // a data port read
            const std::size_t width = in.width(true);
            (void)r.read_port(cf8 + 4 + in.u8() % 4, width);
            break;
        }
        case 3: {  // any port around the range, read or written
            const std::size_t width = in.width(true);
            const std::uint64_t port = cf8 - 4 + in.u8() % 16;
            if (op & 0x80) r.write_port(port, width, in.value(width));
            else (void)r.read_port(port, width);
            break;
        }
        case 4: {  // BAR sizing as Linux's __pci_read_base does it (slot 1 or 2, any BAR)
            const std::uint32_t slot = 1 + (op >> 7), bar = 0x10 + 4 * (in.u8() % 6);
            r.write_port(cf8, 4, 0x80000000u | slot << 11 | bar);
            const auto orig = r.read_port(cf8 + 4, 4);
            r.write_port(cf8 + 4, 4, 0xffffffffu);
            const auto mask = r.read_port(cf8 + 4, 4);
            if (slot == 1 && bar == 0x10) check(mask == ~std::uint32_t(pci::registers_size - 1));
            if (slot == 1 && bar == 0x18) check(mask == (~std::uint32_t(pci::notify_ports - 1) | 1u));
            r.write_port(cf8 + 4, 4, op & 0x40 ? in.u32() : orig);
            break;
        }
        }
    }
    return 0;
}
