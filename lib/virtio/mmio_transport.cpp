#include "virtio/mmio_transport.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::virtio {

namespace {
// Register offsets (include/uapi/linux/virtio_mmio.h).
enum : std::uint64_t {
    reg_magic = 0x000, reg_version = 0x004, reg_device_id = 0x008, reg_vendor_id = 0x00c,
    reg_device_features = 0x010, reg_device_features_sel = 0x014,
    reg_driver_features = 0x020, reg_driver_features_sel = 0x024,
    reg_queue_sel = 0x030, reg_queue_num_max = 0x034, reg_queue_num = 0x038, reg_queue_ready = 0x044,
    reg_queue_notify = 0x050, reg_interrupt_status = 0x060, reg_interrupt_ack = 0x064, reg_status = 0x070,
    reg_queue_desc_low = 0x080, reg_queue_desc_high = 0x084, reg_queue_driver_low = 0x090,
    reg_queue_driver_high = 0x094, reg_queue_device_low = 0x0a0, reg_queue_device_high = 0x0a4,
    reg_config_generation = 0x0fc, reg_config = 0x100,
};
constexpr std::uint32_t magic = 0x74726976;  // "virt"
constexpr std::uint32_t vendor = 0x584f424d;  // "MBOX"

void set_low(std::uint64_t& v, std::uint32_t lo) { v = (v & ~0xffffffffull) | lo; }
void set_high(std::uint64_t& v, std::uint32_t hi) { v = (v & 0xffffffffull) | (std::uint64_t(hi) << 32); }
}  // namespace

mmio_transport::mmio_transport(virtio_device& device, const memory::guest_memory& memory, devices::interrupt_line& irq)
    : handshake_(device, memory), irq_(irq) {}

void mmio_transport::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (offset >= reg_config) return handshake_.device().read_config(offset - reg_config, data);
    std::fill(data.begin(), data.end(), std::uint8_t{0});
    if (data.size() != 4 || offset % 4) return;  // registers are 32-bit, aligned (spec §4.2.2.2)
    std::uint32_t v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

void mmio_transport::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset >= reg_config) {
        if (!handshake_.needs_reset()) handshake_.device().write_config(offset - reg_config, data);
        return;
    }
    if (data.size() != 4 || offset % 4) return;
    std::uint32_t v;
    std::memcpy(&v, data.data(), 4);
    write_register(offset, v);
}

bool mmio_transport::access_interrupt_registers(std::uint64_t offset, bool is_write, std::span<std::uint8_t> data) noexcept {
    if (data.size() != 4) return false;
    std::uint32_t v;
    if (!is_write && offset == reg_interrupt_status) {
        v = read_interrupt_status();
        std::memcpy(data.data(), &v, 4);
        return true;
    }
    if (is_write && offset == reg_interrupt_ack) {
        std::memcpy(&v, data.data(), 4);
        acknowledge_interrupt(v);
        return true;
    }
    return false;
}

std::uint32_t mmio_transport::read_register(std::uint64_t offset) {
    switch (offset) {
    case reg_magic: return magic;
    case reg_version: return 2;
    case reg_device_id: return handshake_.device().device_id();
    case reg_vendor_id: return vendor;
    case reg_device_features: return handshake_.device_features_word(device_features_sel_);
    case reg_queue_num_max: return handshake_.selected_max_size();
    case reg_queue_ready: return handshake_.selected_queue() && handshake_.selected_queue()->ready ? 1 : 0;
    case reg_interrupt_status: return read_interrupt_status();
    case reg_status: return handshake_.status();
    case reg_config_generation: return handshake_.config_generation();
    default: return 0;
    }
}

void mmio_transport::write_register(std::uint64_t offset, std::uint32_t v) {
    // Size and ring addresses only while the queue may be configured; silently ignored
    // otherwise, as the spec leaves it to the device.
    auto* q = handshake_.queue_configurable() ? handshake_.selected_queue() : nullptr;
    switch (offset) {
    case reg_device_features_sel: device_features_sel_ = v; break;
    case reg_driver_features_sel: driver_features_sel_ = v; break;
    case reg_driver_features: handshake_.set_driver_features_word(driver_features_sel_, v); break;
    case reg_queue_sel: handshake_.select_queue(v); break;
    case reg_queue_num: if (q) q->size = static_cast<std::uint16_t>(std::min<std::uint32_t>(v, 0xffff)); break;
    case reg_queue_desc_low: if (q) set_low(q->desc, v); break;
    case reg_queue_desc_high: if (q) set_high(q->desc, v); break;
    case reg_queue_driver_low: if (q) set_low(q->driver, v); break;
    case reg_queue_driver_high: if (q) set_high(q->driver, v); break;
    case reg_queue_device_low: if (q) set_low(q->device, v); break;
    case reg_queue_device_high: if (q) set_high(q->device, v); break;
    case reg_queue_ready:
        if (!handshake_.set_selected_ready(v != 0)) fail_device();
        break;
    case reg_queue_notify:
        if (handshake_.active() && v < handshake_.queues().size()) handshake_.device().notify(v);
        break;
    case reg_interrupt_ack: acknowledge_interrupt(v); break;
    case reg_status: write_status(v); break;
    default: break;
    }
}

void mmio_transport::write_status(std::uint32_t v) {
    if (v == 0) {
        device_features_sel_ = driver_features_sel_ = 0;
        interrupt_status_.store(0, std::memory_order_release);
    }
    if (!handshake_.write_status(v)) fail_device();
}

void mmio_transport::signal_used_buffers() {
    // One edge per unacknowledged period: while the bit is still set the guest has an interrupt
    // coming and handles every used buffer after acknowledging it, so another edge would only
    // be a spurious interrupt (and Linux disables lines that see too many of those).
    const auto before = interrupt_status_.fetch_or(interrupt_used_buffer, std::memory_order_acq_rel);
    if (!(before & interrupt_used_buffer)) raise_edge();
}

void mmio_transport::fail_device() {
    if (!handshake_.mark_needs_reset()) return;
    interrupt_status_.fetch_or(interrupt_config_change, std::memory_order_acq_rel);
    raise_edge();
}

void mmio_transport::save(snapshot::state_writer& out) const {
    out.u32(device_features_sel_);
    out.u32(driver_features_sel_);
    out.u32(interrupt_status());
    handshake_.save(out);
}

boost::system::error_code mmio_transport::restore(snapshot::state_reader& in) {
    device_features_sel_ = in.u32();
    driver_features_sel_ = in.u32();
    interrupt_status_.store(in.u32() & (interrupt_used_buffer | interrupt_config_change), std::memory_order_release);
    if (in.failed()) return in.error();
    return handshake_.restore(in);
}

}  // namespace mimobox::virtio
