// libFuzzer: arbitrary bytes from a (hostile) guest agent, fed in input-chosen chunks, into the
// host's response reader (frames, JSON, responses) and, as requests, into the agent's parser.
// Must yield bounded frames and typed results or a typed error, never crash.
#include "agent/frame.hpp"
#include "agent/response_reader.hpp"
#include "fuzz_reader.hpp"

using namespace mimobox::agent;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t chunk = 1 + data[0] % 64;
    std::span<const std::uint8_t> in(data + 1, size - 1);

    mimobox::fuzz::read_in_chunks(in, chunk, [](const inbound& item) {
        if (auto* d = std::get_if<data_chunk>(&item); d && d->bytes.size() >= max_frame_size) __builtin_trap();
    });

    // The same bytes as one JSON message body, parsed as the guest agent parses requests.
    if (auto v = parse_message(std::string_view(reinterpret_cast<const char*>(in.data()), in.size()))) {
        if (auto rq = request_from_json(*v)) (void)to_json(*rq);
        if (auto rs = response_from_json(*v)) (void)to_json(*rs);
    }
    return 0;
}
