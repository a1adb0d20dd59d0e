// libFuzzer: arbitrary bytes as a snapshot's state blob (a file from disk or another process).
// The loader must answer with a blob or a typed snapshot error, never crash, hang or allocate
// what the input merely claims; the body reader likewise with hostile counts and sections.
#include "snapshot/state_codec.hpp"

using namespace mimobox::snapshot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> in(data, size);
    if (auto blob = from_bytes(in)) {
        // A well-formed blob re-encodes to the same bytes.
        if (to_bytes(*blob) != std::vector<std::uint8_t>(in.begin(), in.end())) __builtin_trap();
    } else if (blob.error().category() != mimobox::vm::snapshot_category()) {
        __builtin_trap();
    }
    // The same bytes as a body: sections, counts and raw structs as restore would read them.
    state_reader r(in);
    for (int i = 0; i < 64 && !r.failed() && !r.at_end(); ++i) {
        auto s = r.section(r.failed() ? 0 : static_cast<std::uint32_t>(i % 4));
        const auto n = s.count(16);
        for (std::uint32_t k = 0; k < n && !s.failed(); ++k) {
            (void)s.u64();
            (void)s.bytes(4096);
        }
    }
    return 0;
}
