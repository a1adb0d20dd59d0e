// Shared by the agent-protocol fuzz targets: feeds guest bytes to a response_reader in chunks of
// `chunk` bytes, as reads would deliver them, and hands every decoded item to `visit`.
#pragma once

#include "agent/response_reader.hpp"

#include <algorithm>
#include <span>

namespace mimobox::fuzz {

template <class Visit>
void read_in_chunks(std::span<const std::uint8_t> in, std::size_t chunk, Visit visit) {
    agent::response_reader reader;
    for (std::size_t pos = 0; pos < in.size(); pos += chunk) {
        reader.feed(in.subspan(pos, std::min(chunk, in.size() - pos)));
        for (;;) {
            auto item = reader.next();
            if (!item || !*item) break;
            visit(**item);
        }
    }
    (void)reader.finish();
}

}  // namespace mimobox::fuzz
