// The serial transport's line protocol against arbitrary bytes from the peer, in both roles:
// the host (responder) and the guest bridge (initiator), cut into arbitrary pieces, with the
// muxer's output drained as a slow line would.
#include "vsock/stream_link.hpp"

#include <algorithm>
#include <cstdint>

using namespace mimobox::vsock;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool as_host = data[0] & 1;
    muxer m = as_host ? muxer(3) : muxer(host_cid, 3);
    if (as_host) (void)m.connect(52);
    else m.listen(52);
    stream_link link(m, as_host ? stream_link::role::responder : stream_link::role::initiator);
    std::size_t pos = 1;
    while (pos < size) {
        const std::size_t piece = std::min<std::size_t>(size - pos, 1 + data[pos] % 97);
        ++pos;
        link.feed(std::span(data + pos, std::min(piece, size - pos)));
        pos += std::min(piece, size - pos);
        const auto out = link.pending_output();
        // Bounded whatever the peer does: the high-water mark plus one largest frame.
        if (out.size() > stream_link::output_high_water + stream_link::frame_overhead + stream_link::max_payload +
                             stream_link::sync_marker.size())
            __builtin_trap();
        link.consume_output(out.size() / 2 + 1);
        while (auto ep = m.take_accepted(52))
            if (auto* c = m.find(*ep)) c->reset();
        m.collect_closed();
        if (link.failed() && !link.pending_output().empty()) __builtin_trap();  // a broken link sends nothing
    }
    return 0;
}
