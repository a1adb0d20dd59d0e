// libFuzzer: a hostile guest driving a virtio-mmio transport (virtio/mmio_transport) through the
// MMIO bus, as KVM's MMIO exits would. Feeds: the first byte picks the device behind the
// transport (the recording fake device from test/support, or the real vsock_device with a
// muxer, both over 64 KiB of guest RAM); then a list of operations, each an opcode byte and its
// operands: register reads and writes at any offset (register-aligned or raw, inside the
// window or straddling its end) with widths 1/2/4/8 and input-chosen values; the status
// handshake, queue setup with input-chosen (often valid, often wild) sizes and ring addresses,
// DRIVER_OK, queue notifications, resets; writes of input bytes into guest RAM (descriptors,
// rings, vsock packets); a minimal driver (fuzz_driver.hpp) that offers input-made vsock packets
// on TX and receive buffers on RX of the queues it brought up, and kicks; the vCPU fast path
// for InterruptStatus/InterruptACK; device-side events (used-buffer signals, device failure,
// host vsock traffic and processing).
// Invariants (a violation is __builtin_trap()):
//   - no crash, sanitizer report or uncaught exception;
//   - reads return bounded values: magic/version/device/vendor ids fixed, QueueNumMax at most
//     the device's maximum (0 past the last queue), QueueReady 0/1, InterruptStatus only bits
//     0-1, Status equal to the transport's status, feature words only the offered bits, an
//     access that is not 32-bit and aligned below 0x100 reads as zero, device config as the
//     device defines it;
//   - the device sees notifications only while the transport has it active, the transport is
//     active only with DRIVER_OK set, the vsock device only while the transport is; activation
//     hands over every queue (never active with DEVICE_NEEDS_RESET
//     set; vsock device and transport active together);
//   - after a reset (Status written 0) the device is inactive and was reset, Status and
//     InterruptStatus read 0 and no queue is ready.
#include "devices/bus.hpp"
#include "virtio/mmio_transport.hpp"
#include "vsock/vsock_device.hpp"

#include "../support/fake_virtio_device.hpp"
#include "fuzz_driver.hpp"
#include "fuzz_input.hpp"

#include <cstring>
#include <optional>

using namespace mimobox;
using fuzz::check;
namespace st = virtio::status;

namespace {

constexpr std::uint64_t ram_size = fuzz::guest_ram_size;
constexpr std::uint64_t window = 0xd0000000, window_size = 0x1000;
constexpr std::uint64_t guest_cid = 3;

enum : std::uint64_t {
    reg_magic = 0x000, reg_version = 0x004, reg_device_id = 0x008, reg_vendor_id = 0x00c,
    reg_device_features = 0x010, reg_device_features_sel = 0x014, reg_driver_features = 0x020,
    reg_driver_features_sel = 0x024, reg_queue_sel = 0x030, reg_queue_num_max = 0x034, reg_queue_num = 0x038,
    reg_queue_ready = 0x044, reg_queue_notify = 0x050, reg_interrupt_status = 0x060, reg_interrupt_ack = 0x064,
    reg_status = 0x070, reg_queue_desc_low = 0x080, reg_queue_desc_high = 0x084, reg_queue_driver_low = 0x090,
    reg_queue_driver_high = 0x094, reg_queue_device_low = 0x0a0, reg_queue_device_high = 0x0a4,
    reg_config_generation = 0x0fc, reg_config = 0x100,
};

struct counting_irq final : devices::interrupt_line {
    std::uint64_t edges = 0;
    void trigger() override { ++edges; }
};

struct rig {
    memory::guest_memory& mem = fuzz::guest_ram();
    counting_irq irq;
    vsock::muxer mux{guest_cid};
    test::fake_virtio_device fake;
    std::optional<vsock::vsock_device> vsock;
    virtio::virtio_device* device = nullptr;
    std::optional<virtio::mmio_transport> t;
    devices::bus bus;
    std::optional<vsock::endpoint> host_conn;
    fuzz::guest_driver driver;

    explicit rig(bool use_vsock) {
        if (use_vsock) {
            mux.listen(1000);
            device = &vsock.emplace(mem, mux);
        } else {
            device = &fake;
        }
        t.emplace(*device, mem, irq);
        if (vsock) vsock->attach(*t);
        if (!bus.add(window, window_size, *t)) fuzz::violated();
    }

    std::size_t queue_count() const { return device->queue_count(); }
    std::uint32_t max_size() const { return vsock ? vsock::vsock_device::queue_size : 8; }

    std::uint64_t read(std::uint64_t offset, std::size_t width) {
        std::uint8_t b[8];
        std::memset(b, 0x5a, sizeof b);
        bus.read(window + offset, std::span(b, width));
        return fuzz::load_le(std::span(b, width));
    }
    void write(std::uint64_t offset, std::size_t width, std::uint64_t v) {
        const fuzz::access_bytes a(v, width);
        const bool active_before = t->active();
        const std::size_t notified_before = fake.notified.size();
        bus.write(window + offset, a.span());
        // Notifications reach the device only while it is active.
        if (fake.notified.size() != notified_before) check(active_before && fake.notified.size() == notified_before + 1);
    }
    std::uint32_t rd32(std::uint64_t offset) { return static_cast<std::uint32_t>(read(offset, 4)); }
    void wr32(std::uint64_t offset, std::uint32_t v) { write(offset, 4, v); }

    /// A read, with what the register may hold.
    void checked_read(std::uint64_t offset, std::size_t width) {
        const std::uint32_t status_before = t->device_status();
        const std::uint64_t v = read(offset, width);
        if (offset + width > window_size) {  // not wholly inside the window: the bus's all-ones
            check(v == (width == 8 ? ~0ull : (1ull << (8 * width)) - 1));
            return;
        }
        if (offset >= reg_config) {
            const std::uint64_t at = offset - reg_config;
            for (std::size_t i = 0; i < width; ++i) {
                const auto byte = static_cast<std::uint8_t>(v >> (8 * i));
                if (vsock) check(byte == (at + i < 8 ? static_cast<std::uint8_t>(guest_cid >> (8 * (at + i))) : 0));
                else check(byte == static_cast<std::uint8_t>(0xa0 + at + i));
            }
            return;
        }
        if (width != 4 || offset % 4) return check(v == 0);
        switch (offset) {
        case reg_magic: return check(v == 0x74726976);
        case reg_version: return check(v == 2);
        case reg_device_id: return check(v == 19);
        case reg_vendor_id: return check(v == 0x584f424d);
        case reg_device_features: {
            const std::uint64_t offered = device->device_features() | virtio::feature_version_1;
            return check((v & ~(offered | offered >> 32)) == 0);
        }
        case reg_queue_num_max: return check(v <= max_size());
        case reg_queue_ready: return check(v <= 1);
        case reg_interrupt_status: return check((v & ~3ull) == 0);
        case reg_status: return check(v == status_before);
        case reg_config_generation: return;
        default: return check(v == 0);  // write-only or reserved
        }
    }

    void reset() {
        const int resets_before = fake.resets;
        wr32(reg_status, 0);
        check(t->device_status() == 0 && !t->active() && t->interrupt_status() == 0 && t->driver_features() == 0);
        check(rd32(reg_status) == 0 && rd32(reg_interrupt_status) == 0);
        if (vsock) check(!vsock->active());
        else check(fake.resets == resets_before + 1);
        for (std::uint32_t q = 0; q < queue_count(); ++q) {
            wr32(reg_queue_sel, q);
            check(rd32(reg_queue_ready) == 0);
        }
        wr32(reg_queue_sel, 0);
    }

    void invariants() {
        const std::uint32_t s = t->device_status();
        if (t->active()) check(s & st::driver_ok);
        check((t->interrupt_status() & ~3u) == 0);
        if (vsock) check(!vsock->active() || t->active());
        else if (fake.activations) check(fake.activated_queues == queue_count());
        if (t->active()) check(!(s & st::device_needs_reset));
        if (vsock) check(vsock->active() == t->active());
    }
};

/// Queue setup as a driver does it, with input-chosen size and addresses: mostly inside RAM and
/// packed as Linux packs them, sometimes wherever the input says.
void setup_queue(rig& r, fuzz::input& in) {
    const std::uint8_t how = in.u8();
    const std::uint32_t q = how & 0x80 ? in.u32() : how % 4;
    const std::uint32_t size = how & 0x40 ? in.u16() : 1u << (in.u8() % 10);
    std::uint64_t desc, driver, device;
    if (how & 0x20) {
        desc = in.u64(), driver = in.u64(), device = in.u64();
    } else {
        desc = (in.u16() % ram_size) & ~std::uint64_t(15);
        driver = desc + 16ull * size;
        device = (driver + 6 + 2ull * size + 3) & ~std::uint64_t(3);
    }
    r.wr32(reg_queue_sel, q);
    r.wr32(reg_queue_num, size);
    r.wr32(reg_queue_desc_low, static_cast<std::uint32_t>(desc));
    r.wr32(reg_queue_desc_high, static_cast<std::uint32_t>(desc >> 32));
    r.wr32(reg_queue_driver_low, static_cast<std::uint32_t>(driver));
    r.wr32(reg_queue_driver_high, static_cast<std::uint32_t>(driver >> 32));
    r.wr32(reg_queue_device_low, static_cast<std::uint32_t>(device));
    r.wr32(reg_queue_device_high, static_cast<std::uint32_t>(device >> 32));
    if (!(how & 0x10)) r.wr32(reg_queue_ready, 1);
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
        switch (op % 13) {
        case 0: {  // register write: aligned register, or any offset in (or past) the window
            const std::size_t width = in.width();
            const std::uint64_t offset = op & 0x80 ? (in.u8() % 0x48) * 4 : in.u16() % (window_size + 8);
            r.write(offset, width, in.value(width));
            break;
        }
        case 1: {  // register read
            const std::size_t width = in.width();
            const std::uint64_t offset = op & 0x80 ? (in.u8() % 0x48) * 4 : in.u16() % (window_size + 8);
            r.checked_read(offset, width);
            break;
        }
        case 2: {  // the status handshake up to FEATURES_OK, with input-chosen feature words
            const std::uint64_t features = op & 0x80 ? in.u64() : virtio::feature_version_1 | (in.u8() & 1);
            r.wr32(reg_status, st::acknowledge);
            r.wr32(reg_status, st::acknowledge | st::driver);
            r.wr32(reg_driver_features_sel, 0);
            r.wr32(reg_driver_features, static_cast<std::uint32_t>(features));
            r.wr32(reg_driver_features_sel, 1);
            r.wr32(reg_driver_features, static_cast<std::uint32_t>(features >> 32));
            r.wr32(reg_status, st::acknowledge | st::driver | st::features_ok);
            break;
        }
        case 3: setup_queue(r, in); break;
        case 4:  // DRIVER_OK on top of what is there, or any status value
            r.wr32(reg_status, op & 0x80 ? in.u32() : r.t->device_status() | st::driver_ok);
            break;
        case 5: {  // QueueNotify
            const std::uint32_t q = op & 0x80 ? in.u32() : in.u8() % 4;
            r.wr32(reg_queue_notify, q);
            break;
        }
        case 6: r.reset(); break;
        case 7: {  // guest RAM: descriptors, rings, packets
            const std::uint64_t at = in.u16() % ram_size;
            const auto bytes = in.bytes(in.u8());
            (void)r.mem.write(memory::guest_addr(at), std::as_bytes(bytes));
            break;
        }
        case 8: {  // the vCPU fast path for InterruptStatus / InterruptACK
            std::uint8_t b[8] = {};
            const bool is_write = op & 0x80;
            const std::size_t width = in.width();
            const std::uint64_t offset = op & 0x40 ? reg_interrupt_status + (op & 0x20 ? 4 : 0) : in.u16() % window_size;
            if (is_write) std::memcpy(b, fuzz::access_bytes(in.u32(), 4).b, 4);
            const bool handled = r.t->access_interrupt_registers(offset, is_write, std::span(b, width));
            if (handled) {
                check(width == 4 && offset == (is_write ? reg_interrupt_ack : reg_interrupt_status));
                if (!is_write) check((fuzz::load_le(std::span(b, 4)) & ~3ull) == 0);
            }
            break;
        }
        case 9: {  // the device's side
            switch (in.u8() % 6) {
            case 0: r.t->signal_used_buffers(); break;
            case 1: r.t->resignal_used_buffers(); break;
            case 2:
                // The device reports a broken driver (and stops using its queues itself, which
                // the fake has none to do).
                if (!r.vsock) r.t->fail_device();
                break;
            case 3:
                if (r.vsock) r.vsock->process();
                break;
            case 4:
                if (r.vsock) {
                    r.vsock->flush_owed_interrupt();
                    (void)r.vsock->renotify();
                }
                break;
            case 5:  // host traffic for the guest's RX queue
                if (r.vsock) {
                    if (!r.host_conn) r.host_conn = r.mux.connect(in.u16());
                    else if (auto* c = r.mux.find(*r.host_conn)) c->write(in.bytes(in.u8()));
                    r.vsock->process();
                }
                break;
            }
            break;
        }
        case 10: {  // the standard bring-up at once: handshake, every queue, DRIVER_OK
            r.wr32(reg_status, 0);
            r.wr32(reg_status, st::acknowledge | st::driver);
            r.wr32(reg_driver_features_sel, 1);
            r.wr32(reg_driver_features, 1);
            r.wr32(reg_status, st::acknowledge | st::driver | st::features_ok);
            const auto qsize = static_cast<std::uint16_t>(1u << (in.u8() % 9));
            r.driver.lay_out(r.queue_count(), qsize, (in.u8() % 4) * 0x1000ull);
            for (std::uint32_t q = 0; q < r.queue_count(); ++q) {
                const auto& dq = r.driver.queues[q];
                r.wr32(reg_queue_sel, q);
                r.wr32(reg_queue_num, qsize);
                r.wr32(reg_queue_desc_low, static_cast<std::uint32_t>(dq.desc));
                r.wr32(reg_queue_driver_low, static_cast<std::uint32_t>(dq.avail));
                r.wr32(reg_queue_device_low, static_cast<std::uint32_t>(dq.used));
                r.wr32(reg_queue_ready, 1);
            }
            r.wr32(reg_status, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
            break;
        }
        case 11: {  // a queue's QueueReady cleared (virtio-mmio allows it before DRIVER_OK)
            r.wr32(reg_queue_sel, in.u8() % 4);
            r.wr32(reg_queue_ready, 0);
            break;
        }
        case 12: {  // the driver makes a buffer available (on the rings of the last bring-up) and kicks
            const std::uint8_t q = in.u8() % 3;
            if (q == 1) (void)r.driver.offer(r.mem, q, fuzz::guest_driver::vsock_packet(in, guest_cid), 0);
            else (void)r.driver.offer(r.mem, q, {}, 1 + in.u8());
            if (!(op & 0x80)) r.wr32(reg_queue_notify, q);
            break;
        }
        }
        r.invariants();
    }
    r.reset();
    r.invariants();
    return 0;
}
