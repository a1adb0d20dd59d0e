#include "virtio/device_handshake.hpp"

namespace mimobox::virtio {

std::uint32_t device_handshake::device_features_word(std::uint32_t select) const {
    const std::uint64_t f = device_.device_features() | feature_version_1;
    return select == 0 ? static_cast<std::uint32_t>(f) : select == 1 ? static_cast<std::uint32_t>(f >> 32) : 0;
}

void device_handshake::set_driver_features_word(std::uint32_t select, std::uint32_t v) {
    if (!(status_ & status::driver) || (status_ & status::features_ok)) return;
    if (select == 0) driver_features_ = (driver_features_ & ~0xffffffffull) | v;
    else if (select == 1) driver_features_ = (driver_features_ & 0xffffffffull) | (std::uint64_t(v) << 32);
}

bool device_handshake::queue_configurable() const {
    const auto* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
    return q && !q->ready && (status_ & status::features_ok) && !(status_ & status::driver_ok) &&
           !(status_ & status::failed);
}

bool device_handshake::set_selected_ready(bool ready) {
    auto* q = selected_queue();
    if (!q || !(status_ & status::features_ok) || (status_ & (status::driver_ok | status::failed))) return true;
    if (!ready) {
        q->ready = false;
        return true;
    }
    const bool size_ok = q->size != 0 && q->size <= device_.queue_max_size(queue_sel_) && (q->size & (q->size - 1)) == 0;
    if (!size_ok || !split_queue::create(memory_, {q->size, q->desc, q->driver, q->device})) return false;
    q->ready = true;
    return true;
}

bool device_handshake::write_status(std::uint32_t v) {
    if (v == 0) {
        reset();
        return true;
    }
    // DEVICE_NEEDS_RESET is the device's to set (spec §2.1.1): a driver write neither sets
    // nor clears it. Found by fuzzing: a driver that set it kept the device active, and a
    // later failure of the device could then no longer deactivate it.
    v = (v & ~status::device_needs_reset) | (status_ & status::device_needs_reset);
    // The driver only adds bits (spec §2.1.2); anything else is ignored.
    if ((v & status_) != status_) return true;
    const std::uint32_t added = v & ~status_;
    if (added & status::failed) {
        // The driver gave up on the device: nothing reaches it again until a reset.
        if (active_) device_.reset();
        active_ = false;
        status_ = v;
        return true;
    }
    if (added & status::features_ok) {
        const std::uint64_t offered = device_.device_features() | feature_version_1;
        if ((driver_features_ & ~offered) || !(driver_features_ & feature_version_1)) v &= ~status::features_ok;
    }
    if ((added & status::driver_ok) && !active_) {
        if (!(v & status::features_ok)) return true;
        // A device that needs a reset stays inactive until the driver resets it. Found by
        // fuzzing: DRIVER_OK written after the device failed activated it again.
        if (status_ & status::device_needs_reset) {
            status_ = v;
            return true;
        }
        std::vector<split_queue> ready;
        for (const auto& q : queues_) {
            if (!q.ready) break;
            ready.push_back(split_queue::create(memory_, {q.size, q.desc, q.driver, q.device}).value());
        }
        status_ = v;
        if (ready.size() != queues_.size() || device_.activate(driver_features_, std::move(ready))) return false;
        active_ = true;
        return true;
    }
    status_ = v;
    return true;
}

bool device_handshake::mark_needs_reset() {
    if (status_ & status::device_needs_reset) return false;
    status_ |= status::device_needs_reset;
    active_ = false;  // no more notifications reach the device until the driver resets it
    return true;
}

void device_handshake::reset() {
    device_.reset();  // idempotent for devices; also after a failure, which leaves it to this
    active_ = false;
    status_ = 0;
    driver_features_ = 0;
    queue_sel_ = 0;
    for (auto& q : queues_) q = {};
    ++config_generation_;
}

void device_handshake::offer_max_sizes() {
    for (std::size_t i = 0; i < queues_.size(); ++i) queues_[i].size = device_.queue_max_size(i);
}

void device_handshake::save(snapshot::state_writer& out) const {
    out.u32(status_);
    out.u64(driver_features_);
    out.u32(queue_sel_);
    out.u32(config_generation_);
    out.boolean(active_);
    out.u32(static_cast<std::uint32_t>(queues_.size()));
    const auto positions = active_ ? device_.queue_positions() : decltype(device_.queue_positions()){};
    for (std::size_t i = 0; i < queues_.size(); ++i) {
        const auto& q = queues_[i];
        out.u16(q.size);
        out.boolean(q.ready);
        out.u64(q.desc);
        out.u64(q.driver);
        out.u64(q.device);
        out.u16(q.msix_vector);
        out.u16(i < positions.size() ? positions[i].first : 0);
        out.u16(i < positions.size() ? positions[i].second : 0);
    }
}

boost::system::error_code device_handshake::restore(snapshot::state_reader& in) {
    using vm::snapshot_errc;
    const std::uint32_t status = in.u32();
    const std::uint64_t features = in.u64();
    const std::uint32_t queue_sel = in.u32();
    const std::uint32_t generation = in.u32();
    const bool active = in.boolean();
    if (in.u32() != queues_.size()) return snapshot_errc::corrupt_state;
    std::vector<queue_registers> queues(queues_.size());
    std::vector<std::pair<std::uint16_t, std::uint16_t>> positions(queues_.size());
    for (std::size_t i = 0; i < queues.size(); ++i) {
        auto& q = queues[i];
        q.size = in.u16();
        q.ready = in.boolean();
        q.desc = in.u64();
        q.driver = in.u64();
        q.device = in.u64();
        q.msix_vector = in.u16();
        positions[i].first = in.u16();
        positions[i].second = in.u16();
        if (q.size > device_.queue_max_size(i)) return snapshot_errc::corrupt_state;
    }
    if (in.failed()) return in.error();
    const std::uint64_t offered = device_.device_features() | feature_version_1;
    if (active && (!(status & status::features_ok) || !(status & status::driver_ok) ||
                   (status & (status::failed | status::device_needs_reset)) || (features & ~offered)))
        return snapshot_errc::corrupt_state;
    status_ = status;
    driver_features_ = features;
    queue_sel_ = queue_sel;
    config_generation_ = generation;
    queues_ = std::move(queues);
    active_ = false;
    if (!active) return {};
    std::vector<split_queue> ready;
    for (std::size_t i = 0; i < queues_.size(); ++i) {
        const auto& q = queues_[i];
        if (!q.ready || (q.size & (q.size - 1)) != 0) return snapshot_errc::corrupt_state;
        auto made = split_queue::create(memory_, {q.size, q.desc, q.driver, q.device});
        if (!made) return snapshot_errc::corrupt_state;
        made->set_position(positions[i].first, positions[i].second);
        ready.push_back(std::move(*made));
    }
    if (device_.activate(driver_features_, std::move(ready))) return snapshot_errc::corrupt_state;
    active_ = true;
    return {};
}

}  // namespace mimobox::virtio
