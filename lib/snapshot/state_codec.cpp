#include "snapshot/state_codec.hpp"

#include <boost/json.hpp>
#include <openssl/evp.h>

#include <memory>

namespace mimobox::snapshot {

namespace json = boost::json;
using vm::snapshot_errc;

namespace {

constexpr std::size_t hash_bytes = 32;

void put_le(std::vector<std::uint8_t>& out, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get_le(std::span<const std::uint8_t> in, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t(in[at + i]) << (8 * i);
    return v;
}

json::object metadata_to_json(const snapshot_metadata& m) {
    json::object o;
    o["format_version"] = m.format_version;
    o["vmm_version"] = m.vmm_version;
    o["vcpu_count"] = m.vcpu_count;
    o["memory_bytes"] = m.memory_bytes;
    o["cpu_vendor"] = m.cpu_vendor;
    json::array cpuid;
    for (const auto& l : m.cpuid)
        cpuid.push_back(json::array{l.function, l.index, l.flags, l.eax, l.ebx, l.ecx, l.edx});
    o["cpuid"] = std::move(cpuid);
    json::array devices;
    for (const auto& d : m.devices) devices.push_back(json::string(d));
    o["devices"] = std::move(devices);
    o["memory_chunk_bytes"] = m.memory_chunk_bytes;
    json::array chunks;
    for (const auto& h : m.memory_chunk_sha256) chunks.push_back(json::string(h));
    o["memory_chunk_sha256"] = std::move(chunks);
    return o;
}

// Every field present with its type and range; anything else is corrupt_state.
bool read_u64(const json::object& o, std::string_view key, std::uint64_t& out) {
    const auto* v = o.if_contains(key);
    if (!v) return false;
    if (const auto* u = v->if_uint64()) return out = *u, true;
    if (const auto* i = v->if_int64(); i && *i >= 0) return out = static_cast<std::uint64_t>(*i), true;
    return false;
}

bool read_u32(const json::object& o, std::string_view key, std::uint32_t& out) {
    std::uint64_t v = 0;
    if (!read_u64(o, key, v) || v > 0xffffffffu) return false;
    out = static_cast<std::uint32_t>(v);
    return true;
}

bool read_string(const json::object& o, std::string_view key, std::string& out, std::size_t max_len) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_string() || v->get_string().size() > max_len) return false;
    out = std::string(v->get_string());
    return true;
}

bool read_string_array(const json::object& o, std::string_view key, std::vector<std::string>& out, std::size_t max_len) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_array() || v->get_array().size() > max_item_count) return false;
    for (const auto& e : v->get_array()) {
        if (!e.is_string() || e.get_string().size() > max_len) return false;
        out.emplace_back(e.get_string());
    }
    return true;
}

boost::system::result<snapshot_metadata> metadata_from_json(std::string_view text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) return snapshot_errc::corrupt_state;
    const auto& o = v.get_object();
    snapshot_metadata m;
    bool ok = read_u32(o, "format_version", m.format_version) && read_string(o, "vmm_version", m.vmm_version, 64) &&
              read_u32(o, "vcpu_count", m.vcpu_count) && read_u64(o, "memory_bytes", m.memory_bytes) &&
              read_string(o, "cpu_vendor", m.cpu_vendor, 12) && read_string_array(o, "devices", m.devices, 128) &&
              read_u64(o, "memory_chunk_bytes", m.memory_chunk_bytes) &&
              read_string_array(o, "memory_chunk_sha256", m.memory_chunk_sha256, 2 * hash_bytes);
    if (!ok) return snapshot_errc::corrupt_state;
    const auto* cpuid = o.if_contains("cpuid");
    if (!cpuid || !cpuid->is_array() || cpuid->get_array().size() > max_item_count) return snapshot_errc::corrupt_state;
    for (const auto& e : cpuid->get_array()) {
        if (!e.is_array() || e.get_array().size() != 7) return snapshot_errc::corrupt_state;
        std::array<std::uint32_t, 7> f{};
        for (std::size_t i = 0; i < 7; ++i) {
            const auto& x = e.get_array()[i];
            std::uint64_t u = 0;
            if (const auto* p = x.if_uint64()) u = *p;
            else if (const auto* q = x.if_int64(); q && *q >= 0) u = static_cast<std::uint64_t>(*q);
            else return snapshot_errc::corrupt_state;
            if (u > 0xffffffffu) return snapshot_errc::corrupt_state;
            f[i] = static_cast<std::uint32_t>(u);
        }
        m.cpuid.push_back({f[0], f[1], f[2], f[3], f[4], f[5], f[6]});
    }
    // Each chunk: 64 hex digits, or empty for a chunk that is all hole (memory_image.hpp).
    for (const auto& h : m.memory_chunk_sha256)
        if (!h.empty() && (h.size() != 2 * hash_bytes || h.find_first_not_of("0123456789abcdef") != std::string::npos))
            return snapshot_errc::corrupt_state;
    return m;
}

}  // namespace

std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> bytes) {
    std::array<std::uint8_t, 32> out{};
    unsigned len = 0;
    // One-shot digest; EVP_Digest cannot fail for SHA-256 short of an allocation failure, which
    // leaves `out` zero and so mismatches every real hash.
    EVP_Digest(bytes.data(), bytes.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 2);
    for (auto b : bytes) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 15]);
    }
    return s;
}

std::vector<std::uint8_t> to_bytes(const state_blob& blob) {
    const std::string meta = json::serialize(metadata_to_json(blob.metadata));
    std::vector<std::uint8_t> out(magic.begin(), magic.end());
    put_le(out, blob.metadata.format_version, 4);
    put_le(out, meta.size(), 4);
    out.insert(out.end(), meta.begin(), meta.end());
    put_le(out, blob.body.size(), 8);
    out.insert(out.end(), blob.body.begin(), blob.body.end());
    const auto digest = sha256(out);
    out.insert(out.end(), digest.begin(), digest.end());
    return out;
}

boost::system::result<state_blob> from_bytes(std::span<const std::uint8_t> in) {
    if (in.size() < magic.size() || !std::equal(magic.begin(), magic.end(), in.begin())) return snapshot_errc::not_a_snapshot;
    std::size_t at = magic.size();
    if (in.size() < at + 8) return snapshot_errc::truncated;
    const auto version = static_cast<std::uint32_t>(get_le(in, at, 4));
    if (version != format_version) return snapshot_errc::unsupported_format_version;
    const auto meta_len = get_le(in, at + 4, 4);
    at += 8;
    if (meta_len > max_metadata_bytes) return snapshot_errc::corrupt_state;
    if (in.size() - at < meta_len + 8) return snapshot_errc::truncated;
    const auto meta_at = at;
    at += meta_len;
    const auto body_len = get_le(in, at, 8);
    at += 8;
    if (body_len > max_body_bytes) return snapshot_errc::corrupt_state;
    if (in.size() - at < body_len + hash_bytes) return snapshot_errc::truncated;
    const auto body_at = at;
    at += body_len;
    if (in.size() - at != hash_bytes) return snapshot_errc::corrupt_state;  // trailing bytes
    // Checked before anything is parsed: the metadata and the body are then what was written.
    const auto digest = sha256(in.first(at));
    if (!std::equal(digest.begin(), digest.end(), in.begin() + at)) return snapshot_errc::corrupt_state;
    auto meta = metadata_from_json(std::string_view(reinterpret_cast<const char*>(in.data() + meta_at), meta_len));
    if (!meta) return meta.error();
    if (meta->format_version != version) return snapshot_errc::corrupt_state;
    state_blob blob;
    blob.metadata = std::move(*meta);
    blob.body.assign(in.begin() + body_at, in.begin() + body_at + body_len);
    return blob;
}

}  // namespace mimobox::snapshot
