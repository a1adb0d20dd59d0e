#include "virtio/pci_transport.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::virtio {

namespace {
using namespace pci_common_cfg;
// Capability structures in configuration space, chained in this order.
constexpr std::uint8_t cap_common = 0x40, cap_notify = 0x50, cap_isr = 0x64, cap_device = 0x74, cap_msix = 0x84;
constexpr std::uint8_t cap_id_vendor = 0x09, cap_id_msix = 0x11;
constexpr std::uint32_t bar0_reg = 0x10, bar2_reg = 0x18;
constexpr std::uint16_t virtio_vendor = 0x1af4, modern_device_base = 0x1040;
constexpr std::uint32_t device_config_size = 0x100;

std::uint64_t load_le(std::span<const std::uint8_t> data) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < data.size() && i < 8; ++i) v |= std::uint64_t(data[i]) << (8 * i);
    return v;
}
void store_le(std::span<std::uint8_t> data, std::uint64_t v) {
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = i < 8 ? static_cast<std::uint8_t>(v >> (8 * i)) : 0;
}
// A 64-bit register written as two 32-bit halves (Linux's vp_iowrite64_twopart) or at once.
void write_half(std::uint64_t& reg, std::uint64_t offset_in_field, std::size_t width, std::uint64_t v) {
    if (width == 8 && offset_in_field == 0) reg = v;
    else if (width == 4 && offset_in_field == 0) reg = (reg & ~0xffffffffull) | (v & 0xffffffffull);
    else if (width == 4 && offset_in_field == 4) reg = (reg & 0xffffffffull) | (v << 32);
}
std::uint64_t read_half(std::uint64_t reg, std::uint64_t offset_in_field, std::size_t width) {
    if (width == 8 && offset_in_field == 0) return reg;
    if (width == 4 && offset_in_field == 0) return reg & 0xffffffffull;
    if (width == 4 && offset_in_field == 4) return reg >> 32;
    return 0;
}
}  // namespace

pci_transport::pci_transport(virtio_device& device, const memory::guest_memory& memory, msi_sink& msi, placement at)
    : handshake_(device, memory), msi_(msi), at_(at) {
    handshake_.offer_max_sizes();
}

// ---- configuration space

void pci_transport::config_read(std::uint32_t offset, std::span<std::uint8_t> data) {
    std::array<std::uint8_t, 256> c{};
    if (offset >= c.size() || data.size() > c.size() - offset) return std::fill(data.begin(), data.end(), std::uint8_t{0xff});
    auto put = [&](std::uint32_t at, std::uint64_t v, std::size_t width) { store_le(std::span(c).subspan(at, width), v); };
    auto vendor_cap = [&](std::uint8_t at, std::uint8_t next, std::uint8_t length, std::uint8_t type, std::uint8_t bar,
                          std::uint32_t bar_offset, std::uint32_t bar_length) {
        c[at] = cap_id_vendor;
        c[at + 1] = next;
        c[at + 2] = length;
        c[at + 3] = type;
        c[at + 4] = bar;
        put(at + 8, bar_offset, 4);
        put(at + 12, bar_length, 4);
    };
    std::lock_guard lock(msix_mutex_);
    put(0x00, virtio_vendor, 2);
    // device_id() is a constant of the device type: safe from this thread.
    put(0x02, modern_device_base + handshake_.device().device_id(), 2);
    put(0x04, command_, 2);
    put(0x06, 0x10, 2);  // status: capability list present
    c[0x08] = 1;         // revision 1: a modern (non-transitional) device
    c[0x0b] = 0xff;      // class: none of the defined ones (the device type says what it is)
    put(bar0_reg, sizing_bar0_ ? ~std::uint32_t(registers_size - 1) : static_cast<std::uint32_t>(at_.registers), 4);
    put(bar2_reg, sizing_bar2_ ? ~std::uint32_t(notify_ports - 1) | 1u : std::uint32_t(at_.notify) | 1u, 4);
    put(0x2c, virtio_vendor, 2);
    put(0x2e, handshake_.device().device_id(), 2);
    c[0x34] = cap_common;
    vendor_cap(cap_common, cap_notify, 16, 1, 0, common_offset, cc_size);
    vendor_cap(cap_notify, cap_isr, 20, 2, 2, 0, notify_ports);
    put(cap_notify + 16, notify_multiplier, 4);
    vendor_cap(cap_isr, cap_device, 16, 3, 0, isr_offset, 1);
    vendor_cap(cap_device, cap_msix, 16, 4, 0, device_offset, device_config_size);
    c[cap_msix] = cap_id_msix;
    put(cap_msix + 2, (msix_vectors - 1) | msix_control_, 2);
    put(cap_msix + 4, msix_table_offset, 4);  // BIR 0
    put(cap_msix + 8, msix_pba_offset, 4);
    std::copy_n(c.begin() + offset, data.size(), data.begin());
}

void pci_transport::config_write(std::uint32_t offset, std::span<const std::uint8_t> data) {
    const std::uint64_t v = load_le(data);
    const std::size_t width = data.size();
    std::lock_guard lock(msix_mutex_);
    if (offset == 0x04 && width >= 2) {
        command_ = static_cast<std::uint16_t>(v);  // decoding is never turned off (see header)
    } else if (offset == bar0_reg && width == 4) {
        sizing_bar0_ = v == 0xffffffffu;  // anything else puts the fixed address back
    } else if (offset == bar2_reg && width == 4) {
        sizing_bar2_ = v == 0xffffffffu;
    } else if ((offset == cap_msix + 2 && width == 2) || (offset == cap_msix && width == 4)) {
        const auto control = static_cast<std::uint16_t>(width == 4 ? v >> 16 : v);
        msix_control_ = control & (msix_enable | msix_function_mask);
        deliver_pending_locked();
    }
}

// ---- BAR 0: common configuration, ISR, device configuration, MSI-X

void pci_transport::read_registers(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), std::uint8_t{0});
    const std::size_t width = data.size();
    if (offset < cc_size) {
        store_le(data, read_common(offset, width));
    } else if (offset == isr_offset) {
        data[0] = isr_;  // reading clears it (spec §4.1.4.5)
        isr_ = 0;
    } else if (offset >= device_offset && offset + width <= device_offset + device_config_size) {
        handshake_.device().read_config(offset - device_offset, data);
    } else if (offset >= msix_table_offset && offset + width <= msix_table_offset + 16 * msix_vectors &&
               (width == 4 || width == 8) && offset % width == 0) {
        std::lock_guard lock(msix_mutex_);
        const auto& e = msix_table_[(offset - msix_table_offset) / 16];
        const std::uint32_t words[4] = {e.address_low, e.address_high, e.data, e.control};
        const std::size_t word = (offset % 16) / 4;
        store_le(data, width == 8 ? words[word] | std::uint64_t(words[word + 1]) << 32 : words[word]);
    } else if (offset == msix_pba_offset && (width == 4 || width == 8)) {
        std::lock_guard lock(msix_mutex_);
        store_le(data, msix_pending_);
    }
}

void pci_transport::write_registers(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::size_t width = data.size();
    const std::uint64_t v = load_le(data);
    if (offset < cc_size) {
        write_common(offset, width, v);
    } else if (offset >= device_offset && offset + width <= device_offset + device_config_size) {
        if (!handshake_.needs_reset()) handshake_.device().write_config(offset - device_offset, data);
    } else if (offset >= msix_table_offset && offset + width <= msix_table_offset + 16 * msix_vectors &&
               (width == 4 || width == 8) && offset % width == 0) {
        write_msix_table(offset - msix_table_offset, width, v);
    }
}

std::uint64_t pci_transport::read_common(std::uint64_t offset, std::size_t width) {
    const auto* q = handshake_.selected_queue();
    auto field = [&](std::uint64_t at, std::size_t w) { return offset == at && width == w; };
    if (field(cc_device_feature_select, 4)) return device_features_sel_;
    if (field(cc_device_feature, 4)) return handshake_.device_features_word(device_features_sel_);
    if (field(cc_driver_feature_select, 4)) return driver_features_sel_;
    if (field(cc_driver_feature, 4))
        return driver_features_sel_ < 2 ? (handshake_.driver_features() >> (32 * driver_features_sel_)) & 0xffffffffu : 0;
    if (field(cc_config_msix_vector, 2)) return config_vector_;
    if (field(cc_num_queues, 2)) return handshake_.queues().size();
    if (field(cc_device_status, 1)) return handshake_.status();
    if (field(cc_config_generation, 1)) return handshake_.config_generation() & 0xff;
    if (field(cc_queue_select, 2)) return handshake_.selected_index() & 0xffff;
    if (field(cc_queue_size, 2)) return q ? q->size : 0;
    if (field(cc_queue_msix_vector, 2)) return q ? q->msix_vector : no_vector;
    if (field(cc_queue_enable, 2)) return q && q->ready ? 1 : 0;
    if (field(cc_queue_notify_off, 2)) return q ? handshake_.selected_index() : 0;
    if (!q) return 0;
    if (offset >= cc_queue_desc && offset < cc_queue_driver) return read_half(q->desc, offset - cc_queue_desc, width);
    if (offset >= cc_queue_driver && offset < cc_queue_device) return read_half(q->driver, offset - cc_queue_driver, width);
    if (offset >= cc_queue_device && offset < cc_size) return read_half(q->device, offset - cc_queue_device, width);
    return 0;
}

void pci_transport::write_common(std::uint64_t offset, std::size_t width, std::uint64_t v) {
    auto field = [&](std::uint64_t at, std::size_t w) { return offset == at && width == w; };
    // Size and ring addresses only while the queue may be configured.
    auto* configurable = handshake_.queue_configurable() ? handshake_.selected_queue() : nullptr;
    if (field(cc_device_feature_select, 4)) {
        device_features_sel_ = static_cast<std::uint32_t>(v);
    } else if (field(cc_driver_feature_select, 4)) {
        driver_features_sel_ = static_cast<std::uint32_t>(v);
    } else if (field(cc_driver_feature, 4)) {
        handshake_.set_driver_features_word(driver_features_sel_, static_cast<std::uint32_t>(v));
    } else if (field(cc_config_msix_vector, 2)) {
        config_vector_ = checked_vector(static_cast<std::uint16_t>(v));  // reads back no_vector if refused
    } else if (field(cc_device_status, 1)) {
        if (!handshake_.write_status(static_cast<std::uint32_t>(v))) fail_device();
        if (v == 0) reset_transport();
    } else if (field(cc_queue_select, 2)) {
        handshake_.select_queue(static_cast<std::uint32_t>(v));
    } else if (field(cc_queue_size, 2)) {
        if (configurable) configurable->size = static_cast<std::uint16_t>(v);
    } else if (field(cc_queue_msix_vector, 2)) {
        if (auto* q = handshake_.selected_queue(); q && !handshake_.needs_reset())
            q->msix_vector = checked_vector(static_cast<std::uint16_t>(v));
    } else if (field(cc_queue_enable, 2)) {
        // Drivers only ever enable (spec §4.1.4.3.2); the checks run now.
        if (v == 1 && !handshake_.set_selected_ready(true)) fail_device();
    } else if (configurable && offset >= cc_queue_desc && offset < cc_size) {
        if (offset < cc_queue_driver) write_half(configurable->desc, offset - cc_queue_desc, width, v);
        else if (offset < cc_queue_device) write_half(configurable->driver, offset - cc_queue_driver, width, v);
        else write_half(configurable->device, offset - cc_queue_device, width, v);
    }
}

void pci_transport::write_msix_table(std::uint64_t offset, std::size_t width, std::uint64_t v) {
    std::lock_guard lock(msix_mutex_);
    auto& e = msix_table_[offset / 16];
    std::uint32_t* words[4] = {&e.address_low, &e.address_high, &e.data, &e.control};
    const std::size_t word = (offset % 16) / 4;
    *words[word] = static_cast<std::uint32_t>(v);
    if (width == 8) *words[word + 1] = static_cast<std::uint32_t>(v >> 32);
    e.control &= 1;  // only the mask bit exists
    deliver_pending_locked();
}

// After the handshake's own reset: what only this transport keeps.
void pci_transport::reset_transport() {
    handshake_.offer_max_sizes();
    device_features_sel_ = driver_features_sel_ = 0;
    config_vector_ = no_vector;
    isr_ = 0;
}

// ---- BAR 2: notifications (normally taken by ioeventfds inside KVM; this is the fallback)

void pci_transport::bar2::read(std::uint64_t, std::span<std::uint8_t> data) { std::fill(data.begin(), data.end(), std::uint8_t{0}); }

void pci_transport::write_notify(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::uint64_t queue = offset / notify_multiplier;
    if (data.size() != 2 || offset % notify_multiplier || load_le(data) != queue) return;
    if (handshake_.active() && queue < handshake_.queues().size()) handshake_.device().notify(queue);
}

// ---- interrupts

void pci_transport::send_vector(std::uint16_t vector) {
    std::lock_guard lock(msix_mutex_);
    send_vector_locked(vector);
}

void pci_transport::send_vector_locked(std::uint16_t vector) {
    if (vector >= msix_vectors || !(msix_control_ & msix_enable)) return;  // no INTx to fall back on
    const auto& e = msix_table_[vector];
    if ((msix_control_ & msix_function_mask) || (e.control & 1)) {
        msix_pending_ |= 1ull << vector;
        messages_held_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    messages_sent_.fetch_add(1, std::memory_order_relaxed);
    msi_.signal(std::uint64_t(e.address_high) << 32 | e.address_low, e.data);
}

void pci_transport::deliver_pending_locked() {
    if (!(msix_control_ & msix_enable) || (msix_control_ & msix_function_mask)) return;
    for (std::uint16_t v = 0; v < msix_vectors; ++v) {
        if (!(msix_pending_ & (1ull << v)) || (msix_table_[v].control & 1)) continue;
        msix_pending_ &= ~(1ull << v);
        send_vector_locked(v);
    }
}

void pci_transport::signal_used_buffers() {
    isr_ |= interrupt_used_buffer;
    std::uint64_t vectors = 0;  // each vector once, however many queues share it
    for (const auto& q : handshake_.queues())
        if (q.msix_vector < msix_vectors) vectors |= 1ull << q.msix_vector;
    for (std::uint16_t v = 0; v < msix_vectors; ++v)
        if (vectors & (1ull << v)) send_vector(v);
}

void pci_transport::fail_device() {
    if (!handshake_.mark_needs_reset()) return;
    isr_ |= interrupt_config_change;
    send_vector(config_vector_);
}

// ---- snapshots

void pci_transport::save(snapshot::state_writer& out) const {
    {
        std::lock_guard lock(msix_mutex_);
        out.u16(command_);
        out.boolean(sizing_bar0_);
        out.boolean(sizing_bar2_);
        out.u16(msix_control_);
        for (const auto& e : msix_table_) {
            out.u32(e.address_low);
            out.u32(e.address_high);
            out.u32(e.data);
            out.u32(e.control);
        }
        out.u64(msix_pending_);
    }
    out.u32(device_features_sel_);
    out.u32(driver_features_sel_);
    out.u16(config_vector_);
    out.u8(isr_);
    handshake_.save(out);
}

boost::system::error_code pci_transport::restore(snapshot::state_reader& in) {
    {
        std::lock_guard lock(msix_mutex_);
        command_ = in.u16();
        sizing_bar0_ = in.boolean();
        sizing_bar2_ = in.boolean();
        msix_control_ = in.u16() & (msix_enable | msix_function_mask);
        for (auto& e : msix_table_) {
            e.address_low = in.u32();
            e.address_high = in.u32();
            e.data = in.u32();
            e.control = in.u32() & 1;
        }
        msix_pending_ = in.u64() & ((1ull << msix_vectors) - 1);
    }
    device_features_sel_ = in.u32();
    driver_features_sel_ = in.u32();
    config_vector_ = checked_vector(in.u16());
    isr_ = in.u8() & (interrupt_used_buffer | interrupt_config_change);
    if (in.failed()) return in.error();
    return handshake_.restore(in);
}

}  // namespace mimobox::virtio
