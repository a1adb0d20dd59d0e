#include "snapshot/memory_image.hpp"

#define BOOST_TEST_MODULE snapshot_memory
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

using namespace mimobox::snapshot;
using mimobox::vm::snapshot_errc;

namespace {

constexpr std::size_t chunk = 2u << 20;
constexpr std::size_t page = 4096;

// Eight MiB of anonymous memory, as guest RAM is: data in chunks 0 and 2, a page touched with
// zeros only in chunk 3, chunk 1 never touched.
struct guest_ram {
    std::size_t size = 4 * chunk;
    std::uint8_t* p = static_cast<std::uint8_t*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    guest_ram() {
        BOOST_REQUIRE(p != MAP_FAILED);
        std::memset(p + 5 * page, 0xab, page);               // chunk 0
        std::memset(p + 2 * chunk + 100, 0x11, 3 * page);    // chunk 2, over four pages
        std::memset(p + 3 * chunk + page, 0, page);          // chunk 3: resident, all zero
    }
    ~guest_ram() { ::munmap(p, size); }
    std::span<const std::uint8_t> bytes() const { return {p, size}; }
};

struct temp_file {
    char name[64] = "/tmp/mimobox-memory-test-XXXXXX";
    int fd = ::mkstemp(name);
    ~temp_file() {
        ::close(fd);
        ::unlink(name);
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(only_touched_nonzero_pages_are_written_and_the_rest_are_holes) {
    guest_ram ram;
    temp_file f;
    auto image = write_memory_image(f.fd, ram.bytes());
    BOOST_REQUIRE(image.has_value());
    BOOST_TEST(image->size == ram.size);
    BOOST_TEST(image->data_bytes == 5 * page);  // one page in chunk 0, four in chunk 2
    BOOST_REQUIRE(image->chunk_sha256.size() == 4u);
    BOOST_TEST(!image->chunk_sha256[0].empty());
    BOOST_TEST(image->chunk_sha256[1].empty());
    BOOST_TEST(!image->chunk_sha256[2].empty());
    BOOST_TEST(image->chunk_sha256[3].empty());
    struct stat st {};
    BOOST_REQUIRE(::fstat(f.fd, &st) == 0);
    BOOST_TEST(static_cast<std::size_t>(st.st_size) == ram.size);
    BOOST_TEST(static_cast<std::size_t>(st.st_blocks) * 512 <= 16 * page);  // sparse on disk
    BOOST_TEST(!verify_memory_image(f.fd, *image));
    // The file maps back to the same bytes.
    void* back = ::mmap(nullptr, ram.size, PROT_READ, MAP_PRIVATE, f.fd, 0);
    BOOST_REQUIRE(back != MAP_FAILED);
    BOOST_TEST(std::memcmp(back, ram.p, ram.size) == 0);
    ::munmap(back, ram.size);
}

BOOST_AUTO_TEST_CASE(a_flipped_byte_in_a_data_chunk_is_corrupt_memory) {
    guest_ram ram;
    temp_file f;
    auto image = write_memory_image(f.fd, ram.bytes());
    BOOST_REQUIRE(image.has_value());
    const std::uint8_t flipped = 0xac;
    BOOST_REQUIRE(::pwrite(f.fd, &flipped, 1, 5 * page + 7) == 1);
    BOOST_TEST((verify_memory_image(f.fd, *image) == snapshot_errc::corrupt_memory));
}

BOOST_AUTO_TEST_CASE(data_where_a_hole_was_recorded_is_corrupt_memory_unless_it_is_zeros) {
    guest_ram ram;
    temp_file f;
    auto image = write_memory_image(f.fd, ram.bytes());
    BOOST_REQUIRE(image.has_value());
    // Zeros written into the hole (a copy that did not keep holes) are still the same memory.
    std::vector<std::uint8_t> zeros(page, 0);
    BOOST_REQUIRE(::pwrite(f.fd, zeros.data(), page, chunk + page) == static_cast<ssize_t>(page));
    BOOST_TEST(!verify_memory_image(f.fd, *image));
    const std::uint8_t one = 1;
    BOOST_REQUIRE(::pwrite(f.fd, &one, 1, chunk + 2 * page) == 1);
    BOOST_TEST((verify_memory_image(f.fd, *image) == snapshot_errc::corrupt_memory));
}

BOOST_AUTO_TEST_CASE(a_short_or_long_file_or_a_bad_description_is_refused) {
    guest_ram ram;
    temp_file f;
    auto image = write_memory_image(f.fd, ram.bytes());
    BOOST_REQUIRE(image.has_value());
    BOOST_REQUIRE(::ftruncate(f.fd, static_cast<off_t>(ram.size - page)) == 0);
    BOOST_TEST((verify_memory_image(f.fd, *image) == snapshot_errc::truncated));
    BOOST_REQUIRE(::ftruncate(f.fd, static_cast<off_t>(ram.size + page)) == 0);
    BOOST_TEST((verify_memory_image(f.fd, *image) == snapshot_errc::corrupt_memory));
    auto wrong = *image;
    wrong.chunk_sha256.pop_back();
    BOOST_TEST((verify_memory_image(f.fd, wrong) == snapshot_errc::corrupt_state));
    wrong.chunk_bytes = 0;
    BOOST_TEST((verify_memory_image(f.fd, wrong) == snapshot_errc::corrupt_state));
}

BOOST_AUTO_TEST_CASE(unaligned_memory_or_chunks_are_invalid_arguments) {
    guest_ram ram;
    temp_file f;
    BOOST_TEST(!write_memory_image(f.fd, ram.bytes(), 1000).has_value());
    BOOST_TEST(!write_memory_image(f.fd, ram.bytes().subspan(1, page)).has_value());
}
