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
    : device_(device), memory_(memory), irq_(irq), queues_(device.queue_count()) {}

void mmio_transport::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (offset >= reg_config) return device_.read_config(offset - reg_config, data);
    std::fill(data.begin(), data.end(), std::uint8_t{0});
    if (data.size() != 4 || offset % 4) return;  // registers are 32-bit, aligned (spec §4.2.2.2)
    std::uint32_t v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

void mmio_transport::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset >= reg_config) {
        if (!(status_ & status::device_needs_reset)) device_.write_config(offset - reg_config, data);
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

mmio_transport::queue_registers* mmio_transport::selected_queue() {
    return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

bool mmio_transport::queue_setup_allowed() const {
    return (status_ & status::features_ok) && !(status_ & status::driver_ok) && !(status_ & status::failed);
}

std::uint32_t mmio_transport::read_register(std::uint64_t offset) {
    switch (offset) {
    case reg_magic: return magic;
    case reg_version: return 2;
    case reg_device_id: return device_.device_id();
    case reg_vendor_id: return vendor;
    case reg_device_features: {
        std::uint64_t f = device_.device_features() | feature_version_1;
        return device_features_sel_ == 0 ? static_cast<std::uint32_t>(f)
               : device_features_sel_ == 1 ? static_cast<std::uint32_t>(f >> 32) : 0;
    }
    case reg_queue_num_max: return selected_queue() ? device_.queue_max_size(queue_sel_) : 0;
    case reg_queue_ready: return selected_queue() && selected_queue()->ready ? 1 : 0;
    case reg_interrupt_status: return read_interrupt_status();
    case reg_status: return status_;
    case reg_config_generation: return config_generation_;
    default: return 0;
    }
}

void mmio_transport::write_register(std::uint64_t offset, std::uint32_t v) {
    auto* q = selected_queue();
    switch (offset) {
    case reg_device_features_sel: device_features_sel_ = v; break;
    case reg_driver_features_sel: driver_features_sel_ = v; break;
    case reg_driver_features:
        // Only between DRIVER and FEATURES_OK (spec §3.1.1).
        if ((status_ & status::driver) && !(status_ & status::features_ok)) {
            if (driver_features_sel_ == 0) set_low(driver_features_, v);
            else if (driver_features_sel_ == 1) set_high(driver_features_, v);
        }
        break;
    case reg_queue_sel: queue_sel_ = v; break;
    case reg_queue_num:
        if (q && queue_setup_allowed() && !q->ready) q->size = static_cast<std::uint16_t>(std::min<std::uint32_t>(v, 0xffff));
        break;
    case reg_queue_desc_low: if (q && queue_setup_allowed() && !q->ready) set_low(q->desc, v); break;
    case reg_queue_desc_high: if (q && queue_setup_allowed() && !q->ready) set_high(q->desc, v); break;
    case reg_queue_driver_low: if (q && queue_setup_allowed() && !q->ready) set_low(q->driver, v); break;
    case reg_queue_driver_high: if (q && queue_setup_allowed() && !q->ready) set_high(q->driver, v); break;
    case reg_queue_device_low: if (q && queue_setup_allowed() && !q->ready) set_low(q->device, v); break;
    case reg_queue_device_high: if (q && queue_setup_allowed() && !q->ready) set_high(q->device, v); break;
    case reg_queue_ready:
        if (!q || !queue_setup_allowed()) break;
        if (v == 0) {
            q->ready = false;
        } else {
            // Check the rings now so a bad setup fails here, not on the first notification.
            bool size_ok = q->size != 0 && q->size <= device_.queue_max_size(queue_sel_) && (q->size & (q->size - 1)) == 0;
            if (size_ok && split_queue::create(memory_, {q->size, q->desc, q->driver, q->device})) q->ready = true;
            else fail_device();
        }
        break;
    case reg_queue_notify:
        if (active_ && !(status_ & status::device_needs_reset) && v < queues_.size()) device_.notify(v);
        break;
    case reg_interrupt_ack: acknowledge_interrupt(v); break;
    case reg_status: write_status(v); break;
    default: break;
    }
}

void mmio_transport::write_status(std::uint32_t v) {
    if (v == 0) return reset();
    // The driver only adds bits (spec §2.1.2); anything else is ignored.
    if ((v & status_) != status_) return;
    const std::uint32_t added = v & ~status_;
    if (added & status::features_ok) {
        const std::uint64_t offered = device_.device_features() | feature_version_1;
        if ((driver_features_ & ~offered) || !(driver_features_ & feature_version_1)) v &= ~status::features_ok;
    }
    if ((added & status::driver_ok) && !active_) {
        if (!(v & status::features_ok)) return;
        std::vector<split_queue> ready;
        for (std::size_t i = 0; i < queues_.size(); ++i) {
            auto& q = queues_[i];
            if (!q.ready) break;
            ready.push_back(split_queue::create(memory_, {q.size, q.desc, q.driver, q.device}).value());
        }
        status_ = v;
        if (ready.size() != queues_.size() || device_.activate(driver_features_, std::move(ready))) return fail_device();
        active_ = true;
        return;
    }
    status_ = v;
}

void mmio_transport::reset() {
    device_.reset();  // idempotent for devices; also after fail_device, which leaves it to this
    active_ = false;
    status_ = 0;
    device_features_sel_ = driver_features_sel_ = 0;
    driver_features_ = 0;
    queue_sel_ = 0;
    interrupt_status_.store(0, std::memory_order_release);
    for (auto& q : queues_) q = {};
    ++config_generation_;
}

void mmio_transport::signal_used_buffers() {
    // One edge per unacknowledged period: while the bit is still set the guest has an interrupt
    // coming and handles every used buffer after acknowledging it, so another edge would only
    // be a spurious interrupt (and Linux disables lines that see too many of those).
    const auto before = interrupt_status_.fetch_or(interrupt_used_buffer, std::memory_order_acq_rel);
    if (!(before & interrupt_used_buffer)) raise_edge();
}

void mmio_transport::fail_device() {
    if (status_ & status::device_needs_reset) return;
    status_ |= status::device_needs_reset;
    active_ = false;  // no more notifications reach the device until the driver resets it
    interrupt_status_.fetch_or(interrupt_config_change, std::memory_order_acq_rel);
    raise_edge();
}

}  // namespace mimobox::virtio
