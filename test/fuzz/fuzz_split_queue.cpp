// libFuzzer: arbitrary guest memory under a split virtqueue. The chain walker must return a
// chain or a virtio_errc, never touch memory outside guest RAM, never loop forever.
#include "virtio/split_queue.hpp"

#include <cstring>

using namespace mimobox;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    static memory::guest_memory mem = [] {
        memory::guest_memory m;
        (void)m.add_region(memory::guest_addr(0), memory::mapping::anonymous(64 * 1024).value());
        return m;
    }();
    auto ram = mem.host_span(memory::guest_addr(0), 64 * 1024).value();
    std::memset(ram.data(), 0, ram.size());
    const std::uint16_t queue_size = std::uint16_t(1) << (data[0] % 9);  // 1..256
    std::memcpy(ram.data(), data + 1, std::min<std::size_t>(size - 1, ram.size()));
    // Rings packed at the start of RAM so the input reaches all three.
    const std::uint64_t avail = 16u * queue_size;
    const std::uint64_t used = (avail + 6 + 2u * queue_size + 3) & ~std::uint64_t(3);
    virtio::queue_layout layout{queue_size, 0x0, avail, used};
    auto q = virtio::split_queue::create(mem, layout);
    if (!q) return 0;
    for (int i = 0; i < 300; ++i) {
        auto chain = q->pop();
        if (!chain || !*chain) break;
        std::uint64_t sum = (*chain)->readable_bytes() + (*chain)->writable_bytes();
        if (sum > virtio::split_queue::max_chain_bytes) __builtin_trap();
        (void)q->push_used((*chain)->head, static_cast<std::uint32_t>((*chain)->writable_bytes()));
    }
    return 0;
}
