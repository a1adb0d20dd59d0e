#include "snapshot/memory_image.hpp"

#include "mimobox/vm/error.hpp"
#include "snapshot/state_codec.hpp"

#include <openssl/evp.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>

namespace mimobox::snapshot {

using boost::system::error_code;
using vm::snapshot_errc;

namespace {

error_code last_error() { return {errno, boost::system::system_category()}; }

bool all_zero(const std::uint8_t* p, std::size_t n) {
    // Word at a time; guest RAM is page-aligned.
    const auto* w = reinterpret_cast<const std::uint64_t*>(p);
    for (std::size_t i = 0; i < n / 8; ++i)
        if (w[i] != 0) return false;
    return true;
}

error_code write_all(int fd, const std::uint8_t* p, std::size_t n, std::uint64_t offset) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            return last_error();
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        offset += static_cast<std::uint64_t>(w);
    }
    return {};
}

struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// Hashes the chunk as it is in memory; pages that are not resident read as zero (reading them
// would make the kernel back them with the zero page, which costs nothing but address space).
std::string hash_chunk(const std::uint8_t* p, std::size_t n) {
    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
    std::array<std::uint8_t, 32> out{};
    unsigned len = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 || EVP_DigestUpdate(ctx.get(), p, n) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1)
        return std::string(64, '-');  // never matches a real hash: the verify will say so
    return to_hex(out);
}

}  // namespace

boost::system::result<memory_image> write_memory_image(int fd, std::span<const std::uint8_t> memory, std::uint64_t chunk_bytes) {
    const memory_source one{memory, {}};
    return write_memory_image(fd, std::span(&one, 1), chunk_bytes);
}

boost::system::result<memory_image> write_memory_image(int fd, std::span<const memory_source> regions, std::uint64_t chunk_bytes) {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    if (chunk_bytes == 0 || chunk_bytes % page != 0) return error_code(EINVAL, boost::system::system_category());
    memory_image image;
    image.chunk_bytes = chunk_bytes;
    for (std::size_t r = 0; r < regions.size(); ++r) {
        const auto memory = regions[r].bytes;
        if (memory.size() % page != 0 || reinterpret_cast<std::uintptr_t>(memory.data()) % page != 0 ||
            (r + 1 < regions.size() && memory.size() % chunk_bytes != 0))
            return error_code(EINVAL, boost::system::system_category());
        const std::uint64_t file_at = image.size;
        const std::size_t pages = memory.size() / page;
        std::vector<unsigned char> resident(pages);
        if (pages > 0 && ::mincore(const_cast<std::uint8_t*>(memory.data()), memory.size(), resident.data()) != 0)
            return last_error();
        for (auto [first, last] : regions[r].file_backed)
            for (std::uint64_t pg = first / page; pg < std::min<std::uint64_t>(pages, (last + page - 1) / page); ++pg) resident[pg] |= 1;
        const std::size_t pages_per_chunk = chunk_bytes / page;
        for (std::size_t first = 0; first < pages; first += pages_per_chunk) {
            const std::size_t last = std::min(pages, first + pages_per_chunk);
            bool any_data = false;
            // Runs of data pages go out in one write each.
            std::size_t run_start = 0, run_len = 0;
            auto flush = [&]() -> error_code {
                if (run_len == 0) return {};
                auto ec = write_all(fd, memory.data() + run_start * page, run_len * page, file_at + run_start * page);
                image.data_bytes += run_len * page;
                run_len = 0;
                return ec;
            };
            for (std::size_t pg = first; pg < last; ++pg) {
                if (resident[pg] & 1) image.touched_bytes += page;
                const bool data = (resident[pg] & 1) && !all_zero(memory.data() + pg * page, page);
                if (data) {
                    if (run_len == 0) run_start = pg;
                    ++run_len;
                    any_data = true;
                } else if (auto ec = flush()) {
                    return ec;
                }
            }
            if (auto ec = flush()) return ec;
            image.chunk_sha256.push_back(any_data ? hash_chunk(memory.data() + first * page, (last - first) * page) : std::string());
        }
        image.size += memory.size();
    }
    if (::ftruncate(fd, static_cast<off_t>(image.size)) != 0) return last_error();
    return image;
}

boost::system::result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> data_ranges(int fd, std::uint64_t offset, std::uint64_t size) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
    const std::uint64_t end = offset + size;
    std::uint64_t at = offset;
    while (at < end) {
        const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;  // no data past `at`
            return last_error();
        }
        if (static_cast<std::uint64_t>(data) >= end) break;
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0) return last_error();
        const std::uint64_t stop = std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), end);
        out.emplace_back(static_cast<std::uint64_t>(data) - offset, stop - offset);
        at = stop;
    }
    return out;
}

boost::system::error_code verify_memory_image(int fd, const memory_image& image) {
    if (image.chunk_bytes == 0 || image.chunk_sha256.size() != (image.size + image.chunk_bytes - 1) / image.chunk_bytes)
        return snapshot_errc::corrupt_state;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return last_error();
    if (static_cast<std::uint64_t>(st.st_size) < image.size) return snapshot_errc::truncated;
    if (static_cast<std::uint64_t>(st.st_size) > image.size) return snapshot_errc::corrupt_memory;
    std::unique_ptr<std::uint8_t[]> buf;
    for (std::size_t c = 0; c < image.chunk_sha256.size(); ++c) {
        const std::uint64_t at = c * image.chunk_bytes;
        const std::uint64_t n = std::min(image.chunk_bytes, image.size - at);
        if (image.chunk_sha256[c].empty()) {
            // Recorded as zeros: a hole costs nothing to check. Data there (a copy that did not
            // keep the holes) must read as zeros.
            const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
            if (data < 0 && errno != ENXIO) return last_error();
            if (data < 0 || static_cast<std::uint64_t>(data) >= at + n) continue;
        }
        if (!buf) buf = std::make_unique_for_overwrite<std::uint8_t[]>(image.chunk_bytes);
        std::uint64_t got = 0;
        while (got < n) {
            const ssize_t r = ::pread(fd, buf.get() + got, n - got, static_cast<off_t>(at + got));
            if (r < 0) {
                if (errno == EINTR) continue;
                return last_error();
            }
            if (r == 0) return snapshot_errc::truncated;
            got += static_cast<std::uint64_t>(r);
        }
        if (image.chunk_sha256[c].empty() ? !all_zero(buf.get(), n) : to_hex(sha256(std::span(buf.get(), n))) != image.chunk_sha256[c])
            return snapshot_errc::corrupt_memory;
    }
    return {};
}

}  // namespace mimobox::snapshot
