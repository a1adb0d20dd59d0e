// A vsock device model with a guest driver around it: three mock queues negotiated through the
// MMIO registers as Linux does. For unit tests and the device-model benchmark; no KVM.
#pragma once

#include "mock_driver.hpp"
#include "virtio/mmio_transport.hpp"
#include "vsock/vsock_device.hpp"

#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace mimobox::test {

struct counting_irq final : devices::interrupt_line {
    int count = 0;
    void trigger() override { ++count; }
};

struct vsock_rig {
    static constexpr std::uint64_t cid = 3;
    memory::guest_memory mem;
    vsock::muxer mux{cid};
    vsock::vsock_device dev{mem, mux};
    counting_irq irq;
    std::optional<virtio::mmio_transport> transport;
    std::optional<mock_driver> rx, tx, ev;

    explicit vsock_rig(std::uint16_t queue_size = 64) {
        if (mem.add_region(memory::guest_addr(0), memory::mapping::anonymous(16u << 20).value()))
            throw std::runtime_error("vsock_rig: guest memory");
        transport.emplace(dev, mem, irq);
        dev.attach(*transport);
        rx.emplace(mem, queue_size, 0x10000, 0x100000);
        tx.emplace(mem, queue_size, 0x20000, 0x400000);
        ev.emplace(mem, queue_size, 0x30000, 0x800000);
        namespace st = virtio::status;
        wr(0x70, st::acknowledge | st::driver);
        wr(0x24, 1);
        wr(0x20, 1);  // VERSION_1
        wr(0x70, st::acknowledge | st::driver | st::features_ok);
        setup(0, *rx, queue_size);
        setup(1, *tx, queue_size);
        setup(2, *ev, queue_size);
        wr(0x70, st::acknowledge | st::driver | st::features_ok | st::driver_ok);
        if (!dev.active()) throw std::runtime_error("vsock_rig: device did not activate");
    }
    void wr(std::uint64_t off, std::uint32_t v) { transport->write(off, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4)); }
    std::uint32_t rd(std::uint64_t off) {
        std::uint32_t v = 0;
        transport->read(off, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
        return v;
    }
    void setup(std::uint32_t index, mock_driver& d, std::uint16_t size) {
        wr(0x30, index);
        wr(0x38, size);
        wr(0x80, static_cast<std::uint32_t>(d.layout().desc));
        wr(0x90, static_cast<std::uint32_t>(d.layout().driver));
        wr(0xa0, static_cast<std::uint32_t>(d.layout().device));
        wr(0x44, 1);
    }
    vsock::header guest_header(vsock::op o, std::uint32_t guest_port, std::uint32_t host_port, std::uint32_t len = 0) const {
        vsock::header h;
        h.src_cid = cid;
        h.dst_cid = vsock::host_cid;
        h.src_port = guest_port;
        h.dst_port = host_port;
        h.operation = o;
        h.len = len;
        h.buf_alloc = 1u << 20;
        return h;
    }
    /// The guest sends a packet split at `split` bytes into two descriptors.
    void guest_send(const vsock::header& h, const std::vector<std::uint8_t>& payload = {}, std::size_t split = 44) {
        auto hdr = vsock::encode(h);
        std::vector<std::uint8_t> all(hdr.begin(), hdr.end());
        all.insert(all.end(), payload.begin(), payload.end());
        std::vector<std::vector<std::uint8_t>> parts;
        parts.emplace_back(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min(split, all.size())));
        if (all.size() > split) parts.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(split), all.end());
        tx->offer(parts, {});
        wr(0x50, 1);
    }
    void post_rx_buffers(int n, std::uint32_t size = 4096) {
        for (int i = 0; i < n; ++i) rx->offer({}, {size});
        wr(0x50, 0);
    }
    /// Packets the device placed in RX buffers, in order (addresses recovered from the table).
    std::vector<std::pair<vsock::header, std::vector<std::uint8_t>>> received(std::uint32_t buffer_size = 4096) {
        std::vector<std::pair<vsock::header, std::vector<std::uint8_t>>> out;
        while (auto used = rx->take_used()) {
            auto desc = rx->read(rx->layout().desc + 16u * used->first, 16);
            std::uint64_t addr;
            std::memcpy(&addr, desc.data(), 8);
            auto bytes = rx->read(addr, std::min(used->second, buffer_size));
            if (bytes.size() < vsock::header_size) continue;
            auto h = vsock::decode(std::span<const std::uint8_t, vsock::header_size>(bytes.data(), vsock::header_size));
            out.emplace_back(h, std::vector<std::uint8_t>(bytes.begin() + vsock::header_size, bytes.end()));
        }
        return out;
    }
};

}  // namespace mimobox::test
