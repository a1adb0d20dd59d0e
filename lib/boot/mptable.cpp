#include "boot/mptable.hpp"

#include "boot/layout.hpp"

#include <cstring>
#include <numeric>
#include <vector>

namespace mimobox::boot {

namespace {
constexpr std::size_t floating_size = 16, header_size = 44, cpu_size = 20, entry_size = 8;
constexpr unsigned ioapic_pins = 24;
constexpr std::uint8_t apic_version = 0x14;

class table_writer {
public:
    void u8(std::uint8_t v) { bytes.push_back(v); }
    void u16(std::uint16_t v) { put(&v, 2); }
    void u32(std::uint32_t v) { put(&v, 4); }
    void text(const char* s, std::size_t n) { put(s, n); }
    void put(const void* p, std::size_t n) {
        auto* b = static_cast<const std::uint8_t*>(p);
        bytes.insert(bytes.end(), b, b + n);
    }
    std::vector<std::uint8_t> bytes;
};

std::uint8_t checksum(const std::uint8_t* p, std::size_t n) {
    return static_cast<std::uint8_t>(-std::accumulate(p, p + n, 0u));
}
}  // namespace

std::size_t mptable_size(unsigned vcpu_count) noexcept {
    return floating_size + header_size + vcpu_count * cpu_size + entry_size * (2 + ioapic_pins + 2);
}

boost::system::error_code write_mptable(const memory::guest_memory& mem, unsigned vcpu_count) {
    const std::uint64_t table_addr = layout::ebda_start + floating_size;
    table_writer t;
    // Configuration table header; length and checksum patched below.
    t.text("PCMP", 4);
    t.u16(0);
    t.u8(4);  // spec revision 1.4
    t.u8(0);
    t.text("MIMOBOX ", 8);
    t.text("MICROVM     ", 12);
    t.u32(0);
    t.u16(0);
    t.u16(0);
    t.u32(static_cast<std::uint32_t>(layout::lapic));
    t.u32(0);
    for (unsigned id = 0; id < vcpu_count; ++id) {
        t.u8(0);  // processor entry
        t.u8(static_cast<std::uint8_t>(id));
        t.u8(apic_version);
        t.u8(id == 0 ? 0x03 : 0x01);  // ENABLED | BSP on CPU 0
        t.u32(0x600);                 // family 6
        t.u32(0x201);                 // FPU | APIC
        t.u32(0);
        t.u32(0);
    }
    t.u8(1);  // bus entry
    t.u8(0);
    t.text("ISA   ", 6);
    const auto ioapic_id = static_cast<std::uint8_t>(vcpu_count + 1);
    t.u8(2);  // IOAPIC entry
    t.u8(ioapic_id);
    t.u8(apic_version);
    t.u8(1);  // enabled
    t.u32(static_cast<std::uint32_t>(layout::ioapic));
    for (unsigned pin = 0; pin < ioapic_pins; ++pin) {
        t.u8(3);  // I/O interrupt: ISA irq n -> IOAPIC pin n
        t.u8(0);  // INT
        t.u16(0);
        t.u8(0);
        t.u8(static_cast<std::uint8_t>(pin));
        t.u8(ioapic_id);
        t.u8(static_cast<std::uint8_t>(pin));
    }
    t.u8(4);  // local interrupt: ExtINT -> LINT0 of the BSP
    t.u8(3);
    t.u16(0);
    t.u8(0);
    t.u8(0);
    t.u8(0);
    t.u8(0);
    t.u8(4);  // local interrupt: NMI -> LINT1 of every CPU
    t.u8(1);
    t.u16(0);
    t.u8(0);
    t.u8(0);
    t.u8(0xff);
    t.u8(1);
    auto length = static_cast<std::uint16_t>(t.bytes.size());
    std::memcpy(t.bytes.data() + 4, &length, 2);
    t.bytes[7] = checksum(t.bytes.data(), t.bytes.size());

    table_writer f;
    f.text("_MP_", 4);
    f.u32(static_cast<std::uint32_t>(table_addr));
    f.u8(1);  // length in 16-byte units
    f.u8(4);
    f.u8(0);  // checksum
    f.u8(0);
    f.u32(0);  // feature bytes 2-5
    f.bytes[10] = checksum(f.bytes.data(), f.bytes.size());

    if (auto ec = mem.write(memory::guest_addr(layout::ebda_start), std::as_bytes(std::span(f.bytes)))) return ec;
    return mem.write(memory::guest_addr(table_addr), std::as_bytes(std::span(t.bytes)));
}

}  // namespace mimobox::boot
