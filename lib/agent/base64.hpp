// Base64 (RFC 4648, standard alphabet) for byte strings in agent messages. Boost has no public
// codec (Beast's is in detail:: and sizes its output for padded input only, which let unpadded
// guest input write past the buffer). The decoder is strict and never writes past what it
// returns: it checks every character, accepts padding only at the end, and also accepts
// unpadded input (length % 4 == 2 or 3), since nothing in the protocol depends on padding.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mimobox::agent::base64 {

inline std::string encode(std::string_view in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k])); };
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        for (int shift = 18; shift >= 0; shift -= 6) out.push_back(alphabet[(v >> shift) & 63]);
    }
    if (const std::size_t rest = in.size() - i; rest > 0) {
        const std::uint32_t v = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(rest == 2 ? alphabet[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

/// nullopt for anything that is not base64: a character outside the alphabet, padding
/// anywhere but the end, or a lone trailing character. Unused bits of the last character
/// are ignored, as most decoders do (RFC 4648 §3.5 leaves it to the decoder).
inline std::optional<std::string> decode(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (in.size() % 4 == 0 && !in.empty()) {
        // At most two '=' and only at the end.
        const std::size_t pad = in.ends_with("==") ? 2 : in.ends_with('=') ? 1 : 0;
        in.remove_suffix(pad);
    }
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char c : in) {
        const int v = value(c);
        if (v < 0) return std::nullopt;  // '=' in the middle lands here too
        acc = (acc << 6 | static_cast<std::uint32_t>(v)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

}  // namespace mimobox::agent::base64
