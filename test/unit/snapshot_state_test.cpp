#include "snapshot/state_codec.hpp"

#define BOOST_TEST_MODULE snapshot_state
#include <boost/test/unit_test.hpp>

using namespace mimobox::snapshot;
using mimobox::vm::snapshot_errc;
using mimobox::vm::condition;

namespace {

state_blob sample() {
    state_blob b;
    b.metadata.vmm_version = "0.1.0";
    b.metadata.vcpu_count = 2;
    b.metadata.memory_bytes = 256ull << 20;
    b.metadata.cpu_vendor = "AuthenticAMD";
    cpuid_leaf leaf;
    leaf.function = 1;
    leaf.eax = 0x00a20f12;
    leaf.ecx = 0x7ed8320b;
    b.metadata.cpuid.push_back(leaf);
    b.metadata.devices = {"serial@0x3f8", "i8042@0x60", "virtio-vsock-pci@00:01.0"};
    b.metadata.memory_chunk_bytes = 2 << 20;
    b.metadata.memory_chunk_sha256 = {std::string(64, 'a'), std::string(), std::string(64, 'b')};  // a hole between
    state_writer w;
    w.begin_section(7);
    w.u32(0xdeadbeef);
    w.u64(42);
    const std::uint8_t payload[] = {1, 2, 3};
    w.bytes(payload);
    w.end_section();
    b.body = w.take();
    return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_blob_round_trips_with_metadata_and_sections) {
    const auto bytes = to_bytes(sample());
    auto back = from_bytes(bytes);
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(back->metadata.vcpu_count == 2u);
    BOOST_TEST(back->metadata.memory_bytes == (256ull << 20));
    BOOST_TEST(back->metadata.cpu_vendor == "AuthenticAMD");
    BOOST_REQUIRE(back->metadata.cpuid.size() == 1u);
    BOOST_TEST(back->metadata.cpuid[0].ecx == 0x7ed8320bu);
    BOOST_TEST(back->metadata.devices.size() == 3u);
    BOOST_TEST(back->metadata.memory_chunk_sha256.size() == 3u);
    BOOST_TEST(back->metadata.memory_chunk_sha256[1].empty());
    state_reader r(back->body);
    auto s = r.section(7);
    BOOST_TEST(s.u32() == 0xdeadbeefu);
    BOOST_TEST(s.u64() == 42u);
    BOOST_TEST(s.bytes(16).size() == 3u);
    s.expect_end();
    BOOST_TEST(!s.error());
    BOOST_TEST(r.at_end());
}

BOOST_AUTO_TEST_CASE(every_truncation_is_a_typed_error) {
    const auto bytes = to_bytes(sample());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        auto r = from_bytes(std::span(bytes.data(), n));
        BOOST_REQUIRE(!r.has_value());
        BOOST_TEST((r.error() == condition::bad_snapshot), "length " << n << ": " << r.error().message());
    }
}

BOOST_AUTO_TEST_CASE(every_flipped_byte_is_detected) {
    const auto bytes = to_bytes(sample());
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        auto damaged = bytes;
        damaged[i] ^= 0x20;
        auto r = from_bytes(damaged);
        BOOST_REQUIRE_MESSAGE(!r.has_value(), "byte " << i);
        BOOST_TEST((r.error() == condition::bad_snapshot), "byte " << i << ": " << r.error().message());
    }
}

BOOST_AUTO_TEST_CASE(magic_version_and_trailing_bytes_are_checked) {
    auto bytes = to_bytes(sample());
    auto wrong_magic = bytes;
    wrong_magic[0] = 'X';
    BOOST_TEST((from_bytes(wrong_magic).error() == snapshot_errc::not_a_snapshot));
    auto newer = bytes;
    newer[8] = 2;  // format version 2
    BOOST_TEST((from_bytes(newer).error() == snapshot_errc::unsupported_format_version));
    auto longer = bytes;
    longer.push_back(0);
    BOOST_TEST((from_bytes(longer).error() == snapshot_errc::corrupt_state));
}

BOOST_AUTO_TEST_CASE(hostile_lengths_are_refused_before_allocating) {
    auto bytes = to_bytes(sample());
    auto huge_meta = bytes;
    for (int i = 0; i < 4; ++i) huge_meta[12 + i] = 0xff;
    BOOST_TEST((from_bytes(huge_meta).error() == snapshot_errc::corrupt_state));
    // A body length past the input.
    const std::size_t meta_len = bytes[12] | (bytes[13] << 8) | (bytes[14] << 16) | (std::size_t(bytes[15]) << 24);
    auto huge_body = bytes;
    for (int i = 0; i < 8; ++i) huge_body[16 + meta_len + i] = 0xff;
    BOOST_TEST((from_bytes(huge_body).error() == condition::bad_snapshot));
}

BOOST_AUTO_TEST_CASE(the_reader_refuses_hostile_counts_wrong_tags_and_short_structs) {
    state_writer w;
    w.u32(1'000'000);  // a count of 1e6 items of 8 bytes, with 4 bytes left
    w.u32(0);
    {
        state_reader r(w.data());
        BOOST_TEST(r.count(8) == 0u);
        BOOST_TEST((r.error() == snapshot_errc::corrupt_state));
    }
    state_writer s;
    s.begin_section(1);
    s.u8(5);
    s.end_section();
    {
        state_reader r(s.data());
        auto inner = r.section(2);  // not the tag that is there
        BOOST_TEST(inner.failed());
        BOOST_TEST(r.failed());
    }
    struct three_words {
        std::uint32_t a, b, c;
    };
    state_writer t;
    const std::uint8_t eight[8] = {};
    t.bytes(eight);
    {
        state_reader r(t.data());
        (void)r.raw<three_words>();
        BOOST_TEST(r.failed());
    }
    state_writer b;
    b.u8(2);
    {
        state_reader r(b.data());
        (void)r.boolean();
        BOOST_TEST(r.failed());  // a bool is 0 or 1
    }
}

BOOST_AUTO_TEST_CASE(metadata_with_wrong_types_is_corrupt_state_even_with_a_valid_hash) {
    // A blob re-hashed after its metadata was edited: the hash passes, the fields do not.
    auto bytes = to_bytes(sample());
    std::string text(bytes.begin() + 16, bytes.begin() + 16 + (bytes[12] | (bytes[13] << 8)));
    const auto at = text.find("\"vcpu_count\":2");
    BOOST_REQUIRE(at != std::string::npos);
    text.replace(at, 14, "\"vcpu_count\":\"");
    text.insert(at + 14, "2\"");
    std::vector<std::uint8_t> edited(bytes.begin(), bytes.begin() + 12);
    const auto len = static_cast<std::uint32_t>(text.size());
    for (int i = 0; i < 4; ++i) edited.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
    edited.insert(edited.end(), text.begin(), text.end());
    const std::size_t old_meta_end = 16 + (bytes[12] | (bytes[13] << 8));
    edited.insert(edited.end(), bytes.begin() + old_meta_end, bytes.end() - 32);
    const auto digest = sha256(edited);
    edited.insert(edited.end(), digest.begin(), digest.end());
    BOOST_TEST((from_bytes(edited).error() == snapshot_errc::corrupt_state));
}
