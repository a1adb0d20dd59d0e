// libFuzzer: a hostile guest driving a virtio-pci transport (virtio/pci_transport) through the
// buses a VM routes it from: BAR 0 (common configuration, ISR, device configuration, MSI-X
// table and pending bits) on the MMIO bus, BAR 2 (notification ports) on the port bus, and its
// configuration space (command, BAR sizing, MSI-X control) through pci_host's ports 0xcf8/0xcfc.
// Feeds: the first byte picks the device (the recording fake from test/support, or the real
// vsock_device with a muxer, over 64 KiB of guest RAM); then a list of operations, each an
// opcode byte and operands: BAR 0 reads/writes at field-aligned or raw offsets with widths
// 1/2/4/8 and input-chosen values, notification port accesses, configuration space accesses,
// the status handshake, queue setup with input-chosen sizes, vectors and ring addresses (as
// 64-bit or two 32-bit halves), DRIVER_OK, resets, MSI-X enable/mask and table programming,
// guest RAM writes, a minimal driver (fuzz_driver.hpp) offering input-made vsock packets and
// receive buffers on the queues it brought up, and device-side events (used-buffer signals, failures, host vsock traffic).
// Invariants (a violation is __builtin_trap()):
//   - no crash, sanitizer report or uncaught exception;
//   - reads return bounded values: ISR only bits 0-1 and clear on read, num_queues the
//     device's, device_status the transport's status, MSI-X vectors below the table size or
//     NO_VECTOR, queue_enable 0/1, feature words only offered bits, MSI-X control words 0/1,
//     pending bits only for existing vectors, BAR 2 reads 0, device config as the device
//     defines it, the identity and BAR registers of configuration space fixed (or the sizing
//     mask after an all-ones BAR write);
//   - every MSI the sink receives is counted by the transport (messages_sent);
//   - the device sees notifications only while the transport has it active, the transport is
//     active only with DRIVER_OK set, the vsock device and the transport are active
//     together, and never with DEVICE_NEEDS_RESET set;
//   - after a reset (device_status written 0) the device is inactive and was reset, the status
//     and ISR read 0, no queue is enabled, queue sizes read the device maximum again and the
//     configuration vector reads NO_VECTOR.
#include "devices/bus.hpp"
#include "devices/pci_host.hpp"
#include "virtio/pci_transport.hpp"
#include "vsock/vsock_device.hpp"

#include "../support/fake_virtio_device.hpp"
#include "fuzz_driver.hpp"
#include "fuzz_input.hpp"

#include <cstring>
#include <optional>

using namespace mimobox;
using fuzz::check;
namespace st = virtio::status;
using pci = virtio::pci_transport;

namespace {

constexpr std::uint64_t ram_size = fuzz::guest_ram_size;
constexpr pci::placement at{0xd0000000, 0x6000};
constexpr unsigned slot = 1;
constexpr std::uint64_t guest_cid = 3;
constexpr std::uint16_t no_vector = pci::no_vector;

using namespace virtio::pci_common_cfg;
constexpr std::uint32_t cap_msix = 0x84;

struct recording_msi final : virtio::msi_sink {
    std::uint64_t messages = 0;
    void signal(std::uint64_t, std::uint32_t) override { ++messages; }
};

struct rig {
    memory::guest_memory& mem = fuzz::guest_ram();
    recording_msi msi;
    vsock::muxer mux{guest_cid};
    test::fake_virtio_device fake;
    std::optional<vsock::vsock_device> vsock;
    virtio::virtio_device* device = nullptr;
    std::optional<pci> t;
    devices::pci_host host;
    devices::bus mmio, pio;
    std::optional<vsock::endpoint> host_conn;
    fuzz::guest_driver driver;
    bool sizing_bar0 = false, sizing_bar2 = false;

    explicit rig(bool use_vsock) {
        if (use_vsock) {
            mux.listen(1000);
            device = &vsock.emplace(mem, mux);
        } else {
            device = &fake;
        }
        t.emplace(*device, mem, msi, at);
        if (vsock) vsock->attach(*t);
        if (!host.add(slot, *t) || !pio.add(devices::pci_host::port_base, devices::pci_host::port_count, host) ||
            !mmio.add(at.registers, pci::registers_size, t->registers()) ||
            !pio.add(at.notify, pci::notify_ports, t->notifications()))
            fuzz::violated();
    }

    std::size_t queue_count() const { return device->queue_count(); }
    std::uint16_t max_size() const { return vsock ? vsock::vsock_device::queue_size : 8; }

    // ---- BAR 0
    std::uint64_t read(std::uint64_t offset, std::size_t width) {
        std::uint8_t b[8];
        std::memset(b, 0x5a, sizeof b);
        mmio.read(at.registers + offset, std::span(b, width));
        return fuzz::load_le(std::span(b, width));
    }
    void write(std::uint64_t offset, std::size_t width, std::uint64_t v) {
        guarded([&] { mmio.write(at.registers + offset, fuzz::access_bytes(v, width).span()); });
    }
    // ---- BAR 2
    void notify_port(std::uint64_t port_offset, std::size_t width, std::uint64_t v) {
        guarded([&] { pio.write(at.notify + port_offset, fuzz::access_bytes(v, width).span()); });
    }
    // ---- configuration space through the host bridge's ports
    void select(std::uint32_t reg) {
        pio.write(devices::pci_host::port_base, fuzz::access_bytes(0x80000000u | slot << 11 | (reg & 0xfc), 4).span());
    }
    std::uint64_t config_read(std::uint32_t reg, std::size_t width) {
        select(reg);
        std::uint8_t b[4];
        pio.read(devices::pci_host::port_base + 4 + (reg & 3), std::span(b, width));
        return fuzz::load_le(std::span(b, width));
    }
    void config_write(std::uint32_t reg, std::size_t width, std::uint64_t v) {
        select(reg);
        pio.write(devices::pci_host::port_base + 4 + (reg & 3), fuzz::access_bytes(v, width).span());
        if (width == 4 && reg == 0x10) sizing_bar0 = v == 0xffffffffu;
        if (width == 4 && reg == 0x18) sizing_bar2 = v == 0xffffffffu;
    }

    /// Runs a guest write and checks that the device heard a notification only while active,
    /// and that messages the sink got were all counted.
    template <class F>
    void guarded(F&& f) {
        const bool active_before = t->active();
        const std::size_t notified_before = fake.notified.size();
        f();
        if (fake.notified.size() != notified_before) check(active_before && fake.notified.size() == notified_before + 1);
    }

    void checked_read(std::uint64_t offset, std::size_t width) {
        const std::uint32_t status_before = t->device_status();
        const std::uint64_t v = read(offset, width);
        if (offset + width > pci::registers_size) return check(v == (width == 8 ? ~0ull : (1ull << (8 * width)) - 1));
        if (offset < cc_size) {
            auto field = [&](std::uint64_t f, std::size_t w) { return offset == f && width == w; };
            const std::uint64_t offered = device->device_features() | virtio::feature_version_1;
            if (field(cc_device_feature, 4)) check((v & ~(offered | offered >> 32)) == 0);
            else if (field(cc_config_msix_vector, 2) || field(cc_queue_msix_vector, 2))
                check(v < pci::msix_vectors || v == no_vector);
            else if (field(cc_num_queues, 2)) check(v == queue_count());
            else if (field(cc_device_status, 1)) check(v == (status_before & 0xff));
            else if (field(cc_queue_enable, 2)) check(v <= 1);
            else if (field(cc_queue_select, 2) || field(cc_queue_size, 2) || field(cc_queue_notify_off, 2)) check(v <= 0xffff);
            return;
        }
        if (offset == pci::isr_offset) {
            check(v <= 3);
            check(read(offset, width) == 0);  // reading cleared it
            return;
        }
        if (offset >= pci::device_offset && offset + width <= pci::device_offset + 0x100) {
            const std::uint64_t at = offset - pci::device_offset;
            for (std::size_t i = 0; i < width; ++i) {
                const auto byte = static_cast<std::uint8_t>(v >> (8 * i));
                if (vsock) check(byte == (at + i < 8 ? static_cast<std::uint8_t>(guest_cid >> (8 * (at + i))) : 0));
                else check(byte == static_cast<std::uint8_t>(0xa0 + at + i));
            }
            return;
        }
        if (offset >= pci::msix_table_offset && offset + width <= pci::msix_table_offset + 16 * pci::msix_vectors) {
            // The control word (the last of each entry) holds only the mask bit.
            if (width == 4 && offset % 16 == 12) check(v <= 1);
            if (width == 8 && offset % 16 == 8) check((v >> 32) <= 1);
            return;
        }
        if (offset == pci::msix_pba_offset) return check(v < (1u << pci::msix_vectors));
        check(v == 0);  // nothing else is there
    }

    void checked_config_read(std::uint32_t reg, std::size_t width) {
        const std::uint64_t v = config_read(reg, width);
        if (reg % width) return check(v == (1ull << (8 * width)) - 1);  // unaligned: nobody answers
        auto whole = [&](std::uint32_t r, std::size_t w) { return reg == r && width == w; };
        if (whole(0x00, 2)) check(v == 0x1af4);
        if (whole(0x02, 2)) check(v == 0x1040 + device->device_id());
        if (whole(0x10, 4)) check(v == (sizing_bar0 ? ~std::uint32_t(pci::registers_size - 1) : at.registers));
        if (whole(0x18, 4)) check(v == (sizing_bar2 ? ~std::uint32_t(pci::notify_ports - 1) | 1u : at.notify | 1u));
        if (whole(cap_msix + 2, 2)) check((v & ~std::uint64_t(0xc000)) == pci::msix_vectors - 1u);
    }

    void reset() {
        const int resets_before = fake.resets;
        write(cc_device_status, 1, 0);
        check(t->device_status() == 0 && !t->active());
        check(read(cc_device_status, 1) == 0 && read(pci::isr_offset, 1) == 0);
        check(read(cc_config_msix_vector, 2) == no_vector);
        if (vsock) check(!vsock->active());
        else check(fake.resets == resets_before + 1);
        for (std::uint32_t q = 0; q < queue_count(); ++q) {
            write(cc_queue_select, 2, q);
            check(read(cc_queue_enable, 2) == 0 && read(cc_queue_size, 2) == max_size());
        }
        write(cc_queue_select, 2, 0);
    }

    void invariants() {
        if (t->active()) check(t->device_status() & st::driver_ok);
        if (vsock) check(!vsock->active() || t->active());
        else if (fake.activations) check(fake.activated_queues == queue_count());
        check(t->messages_sent() == msi.messages);
        if (t->active()) check(!(t->device_status() & st::device_needs_reset));
        if (vsock) check(vsock->active() == t->active());
    }
};

std::uint64_t bar0_offset(std::uint8_t op, fuzz::input& in) {
    if (!(op & 0x80)) return in.u16() % (pci::registers_size + 8);
    const std::uint8_t pick = in.u8();
    switch (pick % 5) {
    case 0: return pci::common_offset + in.u8() % (cc_size + 2);
    case 1: return pci::isr_offset + (pick >> 3) % 4;
    case 2: return pci::device_offset + in.u8();
    case 3: return pci::msix_table_offset + in.u8() % 36;
    default: return pci::msix_pba_offset + (pick >> 3) % 12;
    }
}

void setup_queue(rig& r, fuzz::input& in) {
    const std::uint8_t how = in.u8();
    const std::uint16_t q = how & 0x80 ? in.u16() : how % 4;
    const std::uint16_t size = how & 0x40 ? in.u16() : static_cast<std::uint16_t>(1u << (in.u8() % 10));
    std::uint64_t desc, driver, device;
    if (how & 0x20) {
        desc = in.u64(), driver = in.u64(), device = in.u64();
    } else {
        desc = (in.u16() % ram_size) & ~std::uint64_t(15);
        driver = desc + 16ull * size;
        device = (driver + 6 + 2ull * size + 3) & ~std::uint64_t(3);
    }
    r.write(cc_queue_select, 2, q);
    if (!(how & 0x08)) r.write(cc_queue_size, 2, size);
    r.write(cc_queue_msix_vector, 2, how & 0x04 ? in.u16() : 1);
    const std::uint64_t fields[] = {cc_queue_desc, cc_queue_driver, cc_queue_device};
    const std::uint64_t values[] = {desc, driver, device};
    for (int i = 0; i < 3; ++i) {
        if (how & 0x02) {
            r.write(fields[i], 8, values[i]);
        } else {  // as Linux's vp_iowrite64_twopart
            r.write(fields[i], 4, values[i] & 0xffffffffu);
            r.write(fields[i] + 4, 4, values[i] >> 32);
        }
    }
    if (!(how & 0x10)) r.write(cc_queue_enable, 2, 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    fuzz::input in(data, size);
    auto span = fuzz::guest_ram().host_span(memory::guest_addr(0), ram_size).value();
    std::memset(span.data(), 0, span.size());
    rig r(in.u8() & 1);

    for (int ops = 0; !in.done() && ops < 512; ++ops) {
        const std::uint8_t op = in.u8();
        switch (op % 15) {
        case 0: {
            const std::size_t width = in.width();
            const std::uint64_t offset = bar0_offset(op, in);
            r.write(offset, width, in.value(width));
            break;
        }
        case 1: {
            const std::size_t width = in.width();
            r.checked_read(bar0_offset(op, in), width);
            break;
        }
        case 2: {  // notification ports: the queue index at port 2q, or anything anywhere
            const std::size_t width = op & 0x80 ? in.width(true) : 2;
            const std::uint64_t port = op & 0x40 ? in.u8() % (pci::notify_ports + 4) : (in.u8() % 4) * 2ull;
            const std::uint64_t v = op & 0x20 ? in.value(width) : port / 2;
            r.notify_port(port, width, v);
            if (op & 0x10) {
                std::uint8_t b[4] = {1, 1, 1, 1};
                r.pio.read(at.notify + port, std::span(b, width));
                if (port + width <= pci::notify_ports) check(fuzz::load_le(std::span(b, width)) == 0);
            }
            break;
        }
        case 3: {  // configuration space write
            const std::size_t width = in.width(true);
            const std::uint32_t reg = op & 0x80 ? in.u8() : (in.u8() % 2 ? 0x10 : 0x18);
            r.config_write(reg, width, op & 0x40 ? 0xffffffffu : in.value(width));
            break;
        }
        case 4: {
            const std::size_t width = in.width(true);
            r.checked_config_read(in.u8(), width);
            break;
        }
        case 5: {  // the status handshake up to FEATURES_OK
            const std::uint64_t features = op & 0x80 ? in.u64() : virtio::feature_version_1 | (in.u8() & 1);
            r.write(cc_device_status, 1, st::acknowledge);
            r.write(cc_device_status, 1, st::acknowledge | st::driver);
            r.write(cc_driver_feature_select, 4, 0);
            r.write(cc_driver_feature, 4, features & 0xffffffffu);
            r.write(cc_driver_feature_select, 4, 1);
            r.write(cc_driver_feature, 4, features >> 32);
            r.write(cc_device_status, 1, st::acknowledge | st::driver | st::features_ok);
            r.write(cc_config_msix_vector, 2, op & 0x40 ? in.u16() : 0);
            break;
        }
        case 6: setup_queue(r, in); break;
        case 7: r.write(cc_device_status, 1, op & 0x80 ? in.u8() : (r.t->device_status() | st::driver_ok) & 0xff); break;
        case 8: r.reset(); break;
        case 9: {
            const std::uint64_t where = in.u16() % ram_size;
            const auto bytes = in.bytes(in.u8());
            (void)r.mem.write(memory::guest_addr(where), std::as_bytes(bytes));
            break;
        }
        case 10: {  // MSI-X: enable / function mask in configuration space, a table entry
            const std::uint16_t control = op & 0x80 ? in.u16() : 0x8000;
            if (op & 0x40) r.config_write(cap_msix, 4, std::uint64_t(control) << 16 | 0x11);
            else r.config_write(cap_msix + 2, 2, control);
            const std::uint64_t entry = pci::msix_table_offset + 16 * (in.u8() % pci::msix_vectors);
            r.write(entry, 4, 0xfee00000);
            r.write(entry + 4, 4, 0);
            r.write(entry + 8, 4, in.u8());
            r.write(entry + 12, 4, op & 0x20 ? in.u32() : 0);  // the mask bit, and junk above it
            break;
        }
        case 11: {  // the device's side
            switch (in.u8() % 5) {
            case 0: r.t->signal_used_buffers(); break;
            case 1: r.t->resignal_used_buffers(); break;
            case 2:
                if (!r.vsock) r.t->fail_device();  // the real device resets itself first
                break;
            case 3:
                if (r.vsock) {
                    r.vsock->process();
                    r.vsock->flush_owed_interrupt();
                    (void)r.vsock->renotify();
                }
                break;
            case 4:
                if (r.vsock) {
                    if (!r.host_conn) r.host_conn = r.mux.connect(in.u16());
                    else if (auto* c = r.mux.find(*r.host_conn)) c->write(in.bytes(in.u8()));
                    r.vsock->process();
                }
                break;
            }
            break;
        }
        case 12: {  // the standard bring-up at once
            r.write(cc_device_status, 1, 0);
            r.write(cc_device_status, 1, st::acknowledge | st::driver);
            r.write(cc_driver_feature_select, 4, 1);
            r.write(cc_driver_feature, 4, 1);
            r.write(cc_device_status, 1, st::acknowledge | st::driver | st::features_ok);
            r.write(cc_config_msix_vector, 2, 0);
            const auto qsize = static_cast<std::uint16_t>(1u << (in.u8() % 9));
            r.driver.lay_out(r.queue_count(), qsize, (in.u8() % 4) * 0x1000ull);
            for (std::uint16_t q = 0; q < r.queue_count(); ++q) {
                const auto& dq = r.driver.queues[q];
                r.write(cc_queue_select, 2, q);
                r.write(cc_queue_size, 2, qsize);
                r.write(cc_queue_msix_vector, 2, 1);
                r.write(cc_queue_desc, 8, dq.desc);
                r.write(cc_queue_driver, 8, dq.avail);
                r.write(cc_queue_device, 8, dq.used);
                r.write(cc_queue_enable, 2, 1);
            }
            r.write(cc_device_status, 1, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
            break;
        }
        case 14: {  // the driver makes a buffer available (on the rings of the last bring-up) and kicks
            const std::uint8_t q = in.u8() % 3;
            if (q == 1) (void)r.driver.offer(r.mem, q, fuzz::guest_driver::vsock_packet(in, guest_cid), 0);
            else (void)r.driver.offer(r.mem, q, {}, 1 + in.u8());
            if (!(op & 0x80)) r.notify_port(q * 2ull, 2, q);
            break;
        }
        case 13: {  // a raw port access anywhere around the host bridge's ports
            const std::size_t width = in.width(true);
            const std::uint64_t port = devices::pci_host::port_base + in.u8() % 10;
            if (op & 0x80) r.pio.write(port, fuzz::access_bytes(in.value(width), width).span());
            else {
                std::uint8_t b[4];
                r.pio.read(port, std::span(b, width));
            }
            // A raw latch write may leave a BAR's sizing state the model cannot know of.
            r.config_write(0x10, 4, at.registers);
            r.config_write(0x18, 4, at.notify);
            break;
        }
        }
        r.invariants();
    }
    r.reset();
    r.invariants();
    return 0;
}
