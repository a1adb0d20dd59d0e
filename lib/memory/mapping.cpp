#include "memory/mapping.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>

namespace mimobox::memory {

namespace {
constexpr std::size_t huge_page = 2u << 20;
boost::system::error_code errno_code(int e = errno) noexcept { return {e, boost::system::system_category()}; }
}  // namespace

boost::system::result<mapping> mapping::anonymous(std::size_t size) noexcept {
    if (size == 0) return errno_code(EINVAL);
    // Over-reserve by one huge page and trim, so the usable start is 2 MiB aligned.
    std::size_t reserved = size + huge_page;
    void* base = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return errno_code();
    auto addr = reinterpret_cast<std::uintptr_t>(base);
    auto aligned = (addr + huge_page - 1) & ~(std::uintptr_t(huge_page) - 1);
    (void)::madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);  // advisory; failure is harmless
    return mapping(base, reserved, reinterpret_cast<std::byte*>(aligned), size);
}

boost::system::result<mapping> mapping::file_private(int fd, std::size_t size, std::uint64_t offset) noexcept {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_code();
    if (size == 0 || static_cast<std::uint64_t>(st.st_size) < offset ||
        static_cast<std::uint64_t>(st.st_size) - offset < size)
        return errno_code(EINVAL);
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
                        static_cast<off_t>(offset));
    if (base == MAP_FAILED) return errno_code();
    return mapping(base, size, static_cast<std::byte*>(base), size);
}

mapping::mapping(mapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      reserved_(std::exchange(other.reserved_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

mapping& mapping::operator=(mapping&& other) noexcept {
    if (this != &other) {
        if (base_) ::munmap(base_, reserved_);
        base_ = std::exchange(other.base_, nullptr);
        reserved_ = std::exchange(other.reserved_, 0);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

mapping::~mapping() {
    if (base_) ::munmap(base_, reserved_);
}

}  // namespace mimobox::memory
