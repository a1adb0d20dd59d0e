// The guest side of a split virtqueue, built in a guest_memory exactly as a driver would lay it
// out, so devices and transports are tested without KVM (after rust-vmm's virtqueue mock).
// Hostile tests use the raw setters to write what no correct driver would.
#pragma once

#include "memory/guest_memory.hpp"
#include "virtio/split_queue.hpp"

#include <cstring>
#include <optional>
#include <stdexcept>
#include <span>
#include <utility>
#include <vector>

namespace mimobox::test {

class mock_driver {
public:
    static constexpr std::uint16_t f_next = 1, f_write = 2, f_indirect = 4;

    /// Rings at `ring_base` (desc, then avail, then used, each aligned), buffers allocated from
    /// `buffer_base` upwards. Both must lie in `mem`.
    mock_driver(const memory::guest_memory& mem, std::uint16_t size, std::uint64_t ring_base, std::uint64_t buffer_base)
        : mem_(mem), size_(size), buffer_base_(buffer_base), next_buffer_(buffer_base) {
        layout_.size = size;
        layout_.desc = ring_base;
        layout_.driver = ring_base + 16u * size;
        layout_.device = (layout_.driver + 6 + 2u * size + 3) & ~std::uint64_t(3);
        for (std::uint16_t i = 0; i < size; ++i) free_.push_back(i);
    }

    const virtio::queue_layout& layout() const { return layout_; }
    std::size_t free_descriptors() const { return free_.size(); }

    /// Places the readable payloads and room for the writable lengths in fresh buffers, links
    /// them into a chain and makes it available. Returns the head.
    std::uint16_t offer(const std::vector<std::vector<std::uint8_t>>& readable, const std::vector<std::uint32_t>& writable) {
        std::vector<std::uint16_t> ids;
        if (free_.size() < readable.size() + writable.size())
            throw std::runtime_error("mock_driver: no free descriptors (take_used() first)");
        for (std::size_t i = 0; i < readable.size() + writable.size(); ++i) {
            ids.push_back(free_.front());
            free_.erase(free_.begin());
        }
        std::size_t k = 0;
        for (auto& bytes : readable) {
            auto addr = alloc(bytes.size());
            (void)mem_.write(memory::guest_addr(addr), std::as_bytes(std::span(bytes)));
            write_descriptor(ids[k], addr, static_cast<std::uint32_t>(bytes.size()),
                             k + 1 < ids.size() ? f_next : 0, k + 1 < ids.size() ? ids[k + 1] : 0);
            ++k;
        }
        for (auto len : writable) {
            auto addr = alloc(len);
            write_descriptor(ids[k], addr, len, f_write | (k + 1 < ids.size() ? f_next : 0),
                             k + 1 < ids.size() ? ids[k + 1] : 0);
            ++k;
        }
        chains_.emplace_back(ids[0], ids);
        make_available(ids[0]);
        return ids[0];
    }

    /// Raw descriptor write, for hostile tables.
    void write_descriptor(std::uint16_t index, std::uint64_t addr, std::uint32_t len, std::uint16_t flags, std::uint16_t next) {
        struct {
            std::uint64_t a;
            std::uint32_t l;
            std::uint16_t f, n;
        } d{addr, len, flags, next};
        (void)mem_.write(memory::guest_addr(layout_.desc + 16u * index), std::as_bytes(std::span(&d, 1)));
    }
    /// Puts `head` in the next available slot and bumps the index.
    void make_available(std::uint16_t head) {
        (void)mem_.write_obj(memory::guest_addr(layout_.driver + 4 + 2u * (avail_idx_ % size_)), head);
        set_avail_idx(static_cast<std::uint16_t>(avail_idx_ + 1));
    }
    void set_avail_idx(std::uint16_t idx) {
        avail_idx_ = idx;
        (void)mem_.write_obj(memory::guest_addr(layout_.driver + 2), idx);
    }
    void set_avail_flags(std::uint16_t flags) { (void)mem_.write_obj(memory::guest_addr(layout_.driver), flags); }
    /// What a driver checks before kicking: VIRTQ_USED_F_NO_NOTIFY clear in the used ring.
    bool device_wants_kicks() const {
        return (mem_.read_obj<std::uint16_t>(memory::guest_addr(layout_.device)).value() & 1) == 0;
    }
    /// Scribbles on the used ring's flags, which belong to the device (a stale or hostile driver).
    void set_used_flags(std::uint16_t flags) { (void)mem_.write_obj(memory::guest_addr(layout_.device), flags); }
    /// Makes a chain available without kicking (a driver that saw NO_NOTIFY).
    std::uint16_t offer_quietly(std::uint32_t writable_len) { return offer({}, {writable_len}); }

    /// The next used element (head, written), recycling the chain's descriptors.
    std::optional<std::pair<std::uint16_t, std::uint32_t>> take_used() {
        auto idx = mem_.read_obj<std::uint16_t>(memory::guest_addr(layout_.device + 2)).value();
        if (idx == used_seen_) return std::nullopt;
        auto base = layout_.device + 4 + 8u * (used_seen_ % size_);
        auto id = mem_.read_obj<std::uint32_t>(memory::guest_addr(base)).value();
        auto len = mem_.read_obj<std::uint32_t>(memory::guest_addr(base + 4)).value();
        ++used_seen_;
        for (auto it = chains_.begin(); it != chains_.end(); ++it) {
            if (it->first != id) continue;
            free_.insert(free_.end(), it->second.begin(), it->second.end());
            chains_.erase(it);
            break;
        }
        return std::pair{static_cast<std::uint16_t>(id), len};
    }

    std::vector<std::uint8_t> read(std::uint64_t addr, std::size_t len) const {
        std::vector<std::uint8_t> out(len);
        (void)mem_.read(memory::guest_addr(addr), std::as_writable_bytes(std::span(out)));
        return out;
    }

private:
    // A ring of buffer space: old buffers are reused once the arena wraps, which is fine as long
    // as the device consumed them (tests keep few chains in flight).
    std::uint64_t alloc(std::size_t len) {
        if (next_buffer_ + len > buffer_base_ + arena_bytes) next_buffer_ = buffer_base_;
        auto addr = next_buffer_;
        next_buffer_ += (len + 15) & ~std::size_t(15);
        return addr;
    }

    const memory::guest_memory& mem_;
    std::uint16_t size_;
    virtio::queue_layout layout_;
    static constexpr std::uint64_t arena_bytes = 1u << 20;
    std::uint64_t buffer_base_;
    std::uint64_t next_buffer_;
    std::vector<std::uint16_t> free_;
    std::vector<std::pair<std::uint16_t, std::vector<std::uint16_t>>> chains_;
    std::uint16_t avail_idx_ = 0;
    std::uint16_t used_seen_ = 0;
};

}  // namespace mimobox::test
