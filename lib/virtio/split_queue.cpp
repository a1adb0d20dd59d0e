#include "virtio/split_queue.hpp"

#include <atomic>
#include <cstring>

namespace mimobox::virtio {

namespace {
constexpr std::uint16_t desc_f_next = 1, desc_f_write = 2, desc_f_indirect = 4;
constexpr std::uint16_t avail_f_no_interrupt = 1;
constexpr std::uint16_t used_f_no_notify = 1;

struct raw_descriptor {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(raw_descriptor) == 16);

bool ring_ok(const memory::guest_memory& mem, std::uint64_t addr, std::uint64_t bytes, std::uint64_t align) {
    return addr % align == 0 && mem.host_span(memory::guest_addr(addr), bytes).has_value();
}
}  // namespace

std::uint64_t descriptor_chain::readable_bytes() const noexcept {
    std::uint64_t n = 0;
    for (auto& b : readable) n += b.len;
    return n;
}

std::uint64_t descriptor_chain::writable_bytes() const noexcept {
    std::uint64_t n = 0;
    for (auto& b : writable) n += b.len;
    return n;
}

boost::system::result<split_queue> split_queue::create(const memory::guest_memory& mem, const queue_layout& l) {
    const std::uint64_t n = l.size;
    if (n == 0 || (n & (n - 1)) != 0 || n > 32768) return virtio_errc::ring_out_of_memory;
    if (!ring_ok(mem, l.desc, 16 * n, 16) || !ring_ok(mem, l.driver, 6 + 2 * n, 2) ||
        !ring_ok(mem, l.device, 6 + 8 * n, 4))
        return virtio_errc::ring_out_of_memory;
    split_queue q(mem, l);
    q.outstanding_.assign(n, false);
    return q;
}

std::uint16_t split_queue::load_u16(std::uint64_t addr) const {
    // Safe: create() checked the whole ring lies in guest RAM and is aligned, so this 2-byte
    // slot is inside a live mapping; atomic_ref because the guest writes it concurrently.
    auto span = mem_->host_span(memory::guest_addr(addr), 2).value();
    return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(span.data())).load(std::memory_order_acquire);
}

boost::system::result<std::optional<descriptor_chain>> split_queue::pop() {
    const std::uint16_t avail_idx = load_u16(layout_.driver + 2);
    const std::uint16_t pending = static_cast<std::uint16_t>(avail_idx - next_avail_);
    if (pending == 0) return std::optional<descriptor_chain>{};
    if (pending > layout_.size) return virtio_errc::avail_index_jump;
    // Ring entries are read after the index (acquire above), as the spec's barrier asks.
    const std::uint16_t head = load_u16(layout_.driver + 4 + 2 * (next_avail_ % layout_.size));
    if (head >= layout_.size) return virtio_errc::descriptor_index_out_of_range;
    if (outstanding_[head]) return virtio_errc::descriptor_index_out_of_range;  // head offered twice
    auto chain = walk(head);
    if (!chain) return chain.error();
    ++next_avail_;
    outstanding_[head] = true;
    ++in_flight_;
    return std::optional<descriptor_chain>(std::move(*chain));
}

boost::system::result<descriptor_chain> split_queue::walk(std::uint16_t head) const {
    descriptor_chain chain;
    chain.head = head;
    std::uint64_t total = 0;
    std::uint16_t index = head;
    for (unsigned count = 0;; ++count) {
        if (count >= layout_.size) return virtio_errc::chain_too_long;
        if (index >= layout_.size) return virtio_errc::descriptor_index_out_of_range;
        raw_descriptor d;
        // One copy of the descriptor: everything below checks this copy, never guest memory again.
        if (mem_->read(memory::guest_addr(layout_.desc + 16u * index), std::as_writable_bytes(std::span(&d, 1))))
            return virtio_errc::ring_out_of_memory;
        if (d.flags & desc_f_indirect) return virtio_errc::indirect_not_negotiated;
        if (d.len == 0) return virtio_errc::zero_length_descriptor;
        if (!mem_->host_span(memory::guest_addr(d.addr), d.len)) return virtio_errc::descriptor_out_of_memory;
        total += d.len;
        if (total > max_chain_bytes) return virtio_errc::chain_too_large;
        if (d.flags & desc_f_write) {
            chain.writable.push_back({d.addr, d.len});
        } else {
            if (!chain.writable.empty()) return virtio_errc::readable_after_writable;
            chain.readable.push_back({d.addr, d.len});
        }
        if (!(d.flags & desc_f_next)) break;
        index = d.next;
    }
    return chain;
}

boost::system::error_code split_queue::push_used(std::uint16_t head, std::uint32_t written) {
    if (head >= layout_.size || !outstanding_[head]) return virtio_errc::used_buffer_unknown;
    outstanding_[head] = false;
    --in_flight_;
    const std::uint64_t elem = layout_.device + 4 + 8u * (next_used_ % layout_.size);
    const std::uint32_t entry[2] = {head, written};
    if (auto ec = mem_->write(memory::guest_addr(elem), std::as_bytes(std::span(entry)))) return ec;
    ++next_used_;
    // Safe: the used ring was checked in create(); release orders the element before the index.
    auto idx = mem_->host_span(memory::guest_addr(layout_.device + 2), 2).value();
    std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(idx.data())).store(next_used_, std::memory_order_release);
    return {};
}

bool split_queue::should_notify() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx store before reading the flag
    return !(load_u16(layout_.driver) & avail_f_no_interrupt);
}

void split_queue::set_driver_notifications(bool wanted) {
    // Safe: create() checked the used ring (flags are its first two bytes) lies in guest RAM.
    auto flags = mem_->host_span(memory::guest_addr(layout_.device), 2).value();
    std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(flags.data()))
        .store(wanted ? 0 : used_f_no_notify, std::memory_order_relaxed);
}

bool split_queue::driver_added_buffers() const {
    // The flag store above before the index load: the driver orders its index store before
    // its flag load the same way, so at least one of us sees the other's write.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return load_u16(layout_.driver + 2) != next_avail_;
}

}  // namespace mimobox::virtio
