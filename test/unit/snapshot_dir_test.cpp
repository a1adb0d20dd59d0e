#include "snapshot/snapshot_dir.hpp"

#define BOOST_TEST_MODULE snapshot_dir
#include <boost/test/unit_test.hpp>

#include "mimobox/vm/error.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

using namespace mimobox::snapshot;
using mimobox::vm::condition;
using mimobox::vm::snapshot_errc;
namespace fs = std::filesystem;

namespace {

struct scratch {
    fs::path root;
    std::size_t size = 4u << 20;
    std::uint8_t* ram = static_cast<std::uint8_t*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    scratch() {
        char tmpl[] = "/tmp/mimobox-snapdir-test-XXXXXX";
        root = ::mkdtemp(tmpl);
        std::memset(ram + 12345, 0x5a, 7000);
    }
    ~scratch() {
        ::munmap(ram, size);
        std::error_code ignored;
        fs::remove_all(root, ignored);
    }
    std::span<const std::uint8_t> memory() const { return {ram, size}; }
    static state_blob blob() {
        state_blob b;
        b.metadata.vmm_version = "0.1.0";
        b.metadata.vcpu_count = 1;
        b.metadata.cpu_vendor = "AuthenticAMD";
        state_writer w;
        w.begin_section(1);
        w.u64(99);
        w.end_section();
        b.body = w.take();
        return b;
    }
    void flip(const fs::path& file, std::uint64_t offset) {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(offset));
        char c = 0;
        f.get(c);
        f.seekp(static_cast<std::streamoff>(offset));
        f.put(static_cast<char>(c ^ 0x01));
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_snapshot_directory_round_trips_and_leaves_no_temporary_behind) {
    scratch s;
    const auto dir = s.root / "snap";
    auto written = write_snapshot_dir(dir, scratch::blob(), s.memory());
    BOOST_REQUIRE_MESSAGE(written.has_value(), written.error().message());
    BOOST_TEST(written->metadata.memory_bytes == s.size);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(s.root)) ++entries;
    BOOST_TEST(entries == 1u);  // only `snap`: the temporary was renamed
    auto loaded = open_snapshot_dir(dir);
    BOOST_REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message());
    BOOST_TEST(loaded->state.metadata.vcpu_count == 1u);
    BOOST_TEST(loaded->memory_fd >= 0);
    void* back = ::mmap(nullptr, s.size, PROT_READ, MAP_PRIVATE, loaded->memory_fd, 0);
    BOOST_REQUIRE(back != MAP_FAILED);
    BOOST_TEST(std::memcmp(back, s.ram, s.size) == 0);
    ::munmap(back, s.size);
}

BOOST_AUTO_TEST_CASE(an_existing_target_is_refused_and_nothing_is_left_behind) {
    scratch s;
    const auto dir = s.root / "snap";
    fs::create_directory(dir);
    auto written = write_snapshot_dir(dir, scratch::blob(), s.memory());
    BOOST_TEST((written.error() == boost::system::errc::file_exists));
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(s.root)) ++entries;
    BOOST_TEST(entries == 1u);
}

BOOST_AUTO_TEST_CASE(missing_truncated_or_damaged_files_are_typed_errors) {
    scratch s;
    const auto dir = s.root / "snap";
    BOOST_REQUIRE(write_snapshot_dir(dir, scratch::blob(), s.memory()).has_value());
    BOOST_TEST((open_snapshot_dir(s.root / "absent").error() == condition::not_found));

    s.flip(dir / "memory", 12345 + 10);  // inside the data chunk
    BOOST_TEST((open_snapshot_dir(dir).error() == snapshot_errc::corrupt_memory));
    s.flip(dir / "memory", 12345 + 10);
    BOOST_TEST(open_snapshot_dir(dir).has_value());

    s.flip(dir / "state", 20);
    BOOST_TEST((open_snapshot_dir(dir).error() == condition::bad_snapshot));
    s.flip(dir / "state", 20);

    fs::resize_file(dir / "memory", 16384);  // cuts into the data at 12345..19344
    BOOST_TEST((open_snapshot_dir(dir).error() == snapshot_errc::truncated));
    fs::resize_file(dir / "memory", s.size);  // zeros where data was: the hash says so
    BOOST_TEST((open_snapshot_dir(dir).error() == snapshot_errc::corrupt_memory));

    fs::resize_file(dir / "state", 10);
    BOOST_TEST((open_snapshot_dir(dir).error() == snapshot_errc::truncated));
    fs::remove(dir / "memory");
    fs::remove(dir / "state");
    BOOST_TEST((open_snapshot_dir(dir).error() == condition::not_found));
}
