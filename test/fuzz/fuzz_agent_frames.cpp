// libFuzzer: arbitrary bytes from a (hostile) guest agent into the frame decoder, fed in
// input-chosen chunks. Must yield frames within the size limit or a typed error, never crash.
#include "agent/frame.hpp"

using namespace mimobox::agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    frame_decoder d;
    const std::size_t chunk = 1 + data[0] % 64;
    std::span<const std::uint8_t> in(data + 1, size - 1);
    std::size_t pos = 0;
    while (pos < in.size() && !d.error()) {
        auto used = d.feed(in.subspan(pos, std::min(chunk, in.size() - pos)));
        pos += used;
        while (auto f = d.next())
            if (f->body.size() >= max_frame_size) __builtin_trap();
        if (used == 0 && !d.error()) break;
    }
    (void)d.finish();
    return 0;
}
