// libFuzzer: a hostile guest's vsock packets against the muxer and its connections, with host
// reads, writes and closes interleaved. Buffers must stay bounded; nothing may crash.
#include "vsock/muxer.hpp"

#include <cstring>

using namespace mimobox::vsock;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    muxer m(3);
    m.listen(1000);
    auto host_side = m.connect(2000);
    std::size_t pos = 0;
    std::uint8_t scratch[8192];
    while (pos + 1 <= size) {
        const std::uint8_t action = data[pos++];
        switch (action % 6) {
        case 0:
        case 1: {  // a guest packet: header from the input, payload from what follows
            if (pos + header_size > size) return 0;
            header h = decode(std::span<const std::uint8_t, header_size>(data + pos, header_size));
            pos += header_size;
            if (action & 0x80) {  // mostly well-addressed, so connections get exercised
                h.src_cid = 3;
                h.dst_cid = host_cid;
                h.dst_port = (action & 0x40) ? 1000 : (host_side ? host_side->host_port : 1000);
                h.type = type_stream;
            }
            std::size_t payload = std::min<std::size_t>(h.len, size - pos);
            m.on_guest_packet(h, std::span(data + pos, payload));
            pos += payload;
            break;
        }
        case 2:
            for (;;) {
                // The device takes a guest buffer whenever has_output says so: it must not lie.
                const bool promised = m.has_output();
                const bool given = m.poll_output(action * 16u).has_value();
                if (promised != given) __builtin_trap();
                if (!given) break;
            }
            break;
        case 3:
            if (host_side)
                if (auto* c = m.find(*host_side)) {
                    if (action & 0x40) c->close();
                    else c->write(std::span(data + pos, std::min<std::size_t>(size - pos, 4096)));
                }
            break;
        case 4:
            if (host_side)
                if (auto* c = m.find(*host_side)) {
                    (void)c->read(std::span(scratch, sizeof scratch));
                    if (c->readable() > connection::default_buf_alloc) __builtin_trap();
                }
            break;
        case 5:
            if (auto ep = m.take_accepted(1000))
                if (auto* c = m.find(*ep)) (action & 0x10) ? c->close() : c->reset();
            m.collect_closed();
            break;
        }
        if (m.size() > muxer::max_connections) __builtin_trap();
    }
    return 0;
}
