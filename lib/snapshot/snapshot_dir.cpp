#include "snapshot/snapshot_dir.hpp"

#include "mimobox/vm/error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <random>
#include <utility>

namespace mimobox::snapshot {

using boost::system::error_code;
namespace fs = std::filesystem;

namespace {

error_code last_error() { return {errno, boost::system::system_category()}; }

struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

error_code sync_path(const fs::path& p, int flags) {
    fd_guard f{::open(p.c_str(), flags | O_CLOEXEC)};
    if (f.fd < 0) return last_error();
    return ::fsync(f.fd) == 0 ? error_code{} : last_error();
}

error_code write_file(const fs::path& p, std::span<const std::uint8_t> bytes) {
    fd_guard f{::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (f.fd < 0) return last_error();
    for (std::size_t done = 0; done < bytes.size();) {
        const ssize_t w = ::write(f.fd, bytes.data() + done, bytes.size() - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        done += static_cast<std::size_t>(w);
    }
    return ::fsync(f.fd) == 0 ? error_code{} : last_error();
}

}  // namespace

namespace {

// The directory protocol; `fill` writes the memory file (an empty file, synced afterwards) and
// returns the blob to store.
boost::system::result<state_blob> write_dir(const fs::path& dir, const std::function<boost::system::result<state_blob>(int)>& fill) {
    std::error_code fs_ec;
    if (fs::exists(dir, fs_ec)) return error_code(EEXIST, boost::system::system_category());
    const fs::path tmp = dir.string() + ".tmp-" + std::to_string(std::random_device{}());
    if (::mkdir(tmp.c_str(), 0700) != 0) return last_error();
    struct remove_on_failure {
        const fs::path& tmp;
        bool done = false;
        ~remove_on_failure() {
            std::error_code ignored;
            if (!done) fs::remove_all(tmp, ignored);
        }
    } cleanup{tmp};

    fd_guard mem{::open((tmp / "memory").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (mem.fd < 0) return last_error();
    auto blob = fill(mem.fd);
    if (!blob) return blob.error();
    if (::fsync(mem.fd) != 0) return last_error();
    if (auto ec = write_file(tmp / "state", to_bytes(*blob))) return ec;
    if (auto ec = sync_path(tmp, O_RDONLY | O_DIRECTORY)) return ec;
    if (::rename(tmp.c_str(), dir.c_str()) != 0) return last_error();
    cleanup.done = true;
    const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
    if (auto ec = sync_path(parent, O_RDONLY | O_DIRECTORY)) return ec;
    return blob;
}

// Copies the data ranges of `from` into the empty `to` at the same offsets: the holes stay holes.
error_code copy_sparse(int from, int to, std::uint64_t size) {
    auto ranges = data_ranges(from, 0, size);
    if (!ranges) return ranges.error();
    std::vector<std::uint8_t> buf(1u << 20);
    for (auto [first, last] : *ranges) {
        for (std::uint64_t at = first; at < last;) {
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), last - at));
            const ssize_t r = ::pread(from, buf.data(), want, static_cast<off_t>(at));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return last_error();
            if (r == 0) return vm::snapshot_errc::truncated;
            for (ssize_t done = 0; done < r;) {
                const ssize_t w = ::pwrite(to, buf.data() + done, static_cast<std::size_t>(r - done), static_cast<off_t>(at + done));
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) return last_error();
                done += w;
            }
            at += static_cast<std::uint64_t>(r);
        }
    }
    return ::ftruncate(to, static_cast<off_t>(size)) == 0 ? error_code{} : last_error();
}

}  // namespace

boost::system::result<state_blob> write_snapshot_dir(const fs::path& dir, state_blob blob, std::span<const std::uint8_t> memory) {
    return write_dir(dir, [&](int fd) -> boost::system::result<state_blob> {
        auto image = write_memory_image(fd, memory);
        if (!image) return image.error();
        blob.metadata.memory_bytes = image->size;
        blob.metadata.memory_chunk_bytes = image->chunk_bytes;
        blob.metadata.memory_chunk_sha256 = std::move(image->chunk_sha256);
        return std::move(blob);
    });
}

boost::system::result<state_blob> write_snapshot_dir(const fs::path& dir, const state_blob& blob, int memory_fd) {
    return write_dir(dir, [&](int fd) -> boost::system::result<state_blob> {
        if (auto ec = copy_sparse(memory_fd, fd, blob.metadata.memory_bytes)) return ec;
        return blob;
    });
}

loaded_snapshot::loaded_snapshot(loaded_snapshot&& other) noexcept
    : state(std::move(other.state)), memory_fd(std::exchange(other.memory_fd, -1)) {}

loaded_snapshot& loaded_snapshot::operator=(loaded_snapshot&& other) noexcept {
    if (this != &other) {
        if (memory_fd >= 0) ::close(memory_fd);
        state = std::move(other.state);
        memory_fd = std::exchange(other.memory_fd, -1);
    }
    return *this;
}

loaded_snapshot::~loaded_snapshot() {
    if (memory_fd >= 0) ::close(memory_fd);
}

boost::system::result<loaded_snapshot> open_snapshot_dir(const fs::path& dir) {
    fd_guard st{::open((dir / "state").c_str(), O_RDONLY | O_CLOEXEC)};
    if (st.fd < 0) return last_error();
    struct stat info {};
    if (::fstat(st.fd, &info) != 0) return last_error();
    // The state is small; a file claiming more than the format allows is not read at all.
    const auto limit = magic.size() + 8 + max_metadata_bytes + 8 + max_body_bytes + 32;
    if (static_cast<std::uint64_t>(info.st_size) > limit) return vm::snapshot_errc::corrupt_state;
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(info.st_size));
    for (std::size_t done = 0; done < bytes.size();) {
        const ssize_t r = ::pread(st.fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        if (r == 0) return vm::snapshot_errc::truncated;
        done += static_cast<std::size_t>(r);
    }
    auto blob = from_bytes(bytes);
    if (!blob) return blob.error();
    loaded_snapshot out;
    out.memory_fd = ::open((dir / "memory").c_str(), O_RDONLY | O_CLOEXEC);
    if (out.memory_fd < 0) return last_error();
    memory_image image;
    image.size = blob->metadata.memory_bytes;
    image.chunk_bytes = blob->metadata.memory_chunk_bytes;
    image.chunk_sha256 = blob->metadata.memory_chunk_sha256;
    if (auto ec = verify_memory_image(out.memory_fd, image)) return ec;
    out.state = std::move(*blob);
    return out;
}

}  // namespace mimobox::snapshot
