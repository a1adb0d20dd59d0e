// Shared by the transport fuzz targets: just enough of a virtio driver to make buffers
// available on a split queue the harness brought up, so the device behind the transport gets
// real descriptor chains (vsock packets on TX, receive buffers on RX) within a short run.
// Rings lie in [0, 0xc000) of guest RAM, buffers in 64 slots of 256 bytes from 0xc000.
#pragma once

#include "fuzz_input.hpp"
#include "memory/guest_memory.hpp"
#include "vsock/packet.hpp"

#include <array>
#include <cstring>
#include <vector>

namespace mimobox::fuzz {

inline constexpr std::uint64_t guest_ram_size = 64 * 1024;
/// The targets' guest RAM: made once per process (each run rewrites what it uses).
inline memory::guest_memory& guest_ram() {
    static memory::guest_memory mem = [] {
        memory::guest_memory m;
        if (m.add_region(memory::guest_addr(0), memory::mapping::anonymous(guest_ram_size).value())) violated();
        return m;
    }();
    return mem;
}

struct driver_queue {
    std::uint64_t desc = 0, avail = 0, used = 0;
    std::uint16_t size = 0;  // 0: not brought up by the harness
    std::uint16_t avail_idx = 0;
};

class guest_driver {
public:
    static constexpr std::uint64_t buffers = 0xc000, slot_size = 256, slots = 64;

    std::array<driver_queue, 3> queues{};

    /// Lays out `count` queues of `size` from `base` as Linux packs them; returns the layouts.
    void lay_out(std::size_t count, std::uint16_t size, std::uint64_t base) {
        for (std::size_t q = 0; q < queues.size(); ++q) {
            if (q >= count) {
                queues[q] = {};
                continue;
            }
            const std::uint64_t avail = base + 16ull * size, used = (avail + 6 + 2ull * size + 3) & ~3ull;
            queues[q] = {base, avail, used, size, 0};
            base = (used + 6 + 8ull * size + 15) & ~15ull;
        }
    }

    /// Makes one chain available on queue `q`: a readable buffer with `readable` bytes, then
    /// (when `writable` is not 0) a device-writable one. Returns false if the queue is not set up.
    bool offer(const memory::guest_memory& mem, std::size_t q, std::span<const std::uint8_t> readable,
               std::uint32_t writable) {
        if (q >= queues.size() || queues[q].size == 0) return false;
        auto& dq = queues[q];
        const std::uint16_t head = dq.avail_idx % dq.size;
        const std::uint16_t second = static_cast<std::uint16_t>((head + 1) % dq.size);
        std::uint16_t first = head;
        if (!readable.empty()) {
            const std::uint64_t at = buffers + (slot(dq) * slot_size);
            (void)mem.write(memory::guest_addr(at), std::as_bytes(readable));
            put_desc(mem, dq, head, at, static_cast<std::uint32_t>(readable.size()), writable ? 1 : 0, second);
            first = second;
        }
        if (writable) {
            const std::uint64_t at = buffers + (slot(dq) * slot_size);
            put_desc(mem, dq, first, at, writable, 2, 0);
        }
        put16(mem, dq.avail + 4 + 2ull * (dq.avail_idx % dq.size), head);
        ++dq.avail_idx;
        put16(mem, dq.avail + 2, dq.avail_idx);
        return true;
    }

    /// A vsock packet from the input: its header, mostly well-addressed (so connections to the
    /// harness's listener on port 1000 open and carry data), then its payload.
    static std::vector<std::uint8_t> vsock_packet(input& in, std::uint64_t guest_cid) {
        const std::uint8_t how = in.u8();
        std::array<std::uint8_t, vsock::header_size> raw{};
        const auto h_bytes = in.bytes(vsock::header_size);
        std::memcpy(raw.data(), h_bytes.data(), h_bytes.size());
        vsock::header h = vsock::decode(raw);
        const auto payload = in.bytes(how & 0x3f);
        if (how & 0x80) {
            h.src_cid = guest_cid;
            h.dst_cid = vsock::host_cid;
            h.dst_port = 1000;
            h.type = vsock::type_stream;
            if (how & 0x40) h.len = static_cast<std::uint32_t>(payload.size());
        }
        const auto hdr = vsock::encode(h);
        std::vector<std::uint8_t> out(hdr.begin(), hdr.end());
        out.insert(out.end(), payload.begin(), payload.end());
        return out;
    }

private:
    std::uint64_t next_slot_ = 0;
    std::uint64_t slot(const driver_queue&) { return next_slot_++ % slots; }
    static void put16(const memory::guest_memory& mem, std::uint64_t at, std::uint16_t v) {
        (void)mem.write(memory::guest_addr(at), std::as_bytes(std::span(&v, 1)));
    }
    static void put_desc(const memory::guest_memory& mem, const driver_queue& dq, std::uint16_t i, std::uint64_t addr,
                         std::uint32_t len, std::uint16_t flags, std::uint16_t next) {
        std::uint8_t d[16];
        std::memcpy(d, &addr, 8);
        std::memcpy(d + 8, &len, 4);
        std::memcpy(d + 12, &flags, 2);
        std::memcpy(d + 14, &next, 2);
        (void)mem.write(memory::guest_addr(dq.desc + 16ull * i), std::as_bytes(std::span(d)));
    }
};

}  // namespace mimobox::fuzz
