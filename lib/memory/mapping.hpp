// An owned host mapping that backs guest RAM. Anonymous today; a snapshot restore maps a memory
// file MAP_PRIVATE in its place (copy-on-write, shared page cache across clones).
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>

namespace mimobox::memory {

class mapping {
public:
    /// Anonymous private memory, MAP_NORESERVE: pages cost nothing until the guest touches them.
    /// The host address is aligned to 2 MiB so that it is congruent with 2 MiB-aligned guest
    /// addresses and transparent huge pages can back it.
    static boost::system::result<mapping> anonymous(std::size_t size) noexcept;
    /// Private copy-on-write view of `size` bytes of `fd` at `offset`; the file must be at least
    /// that long (a short file would SIGBUS on access), else EINVAL.
    static boost::system::result<mapping> file_private(int fd, std::size_t size, std::uint64_t offset) noexcept;

    mapping() noexcept = default;
    mapping(mapping&& other) noexcept;
    mapping& operator=(mapping&& other) noexcept;
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    ~mapping();

    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    mapping(void* base, std::size_t reserved, std::byte* data, std::size_t size) noexcept
        : base_(base), reserved_(reserved), data_(data), size_(size) {}
    void* base_ = nullptr;       // what munmap takes
    std::size_t reserved_ = 0;
    std::byte* data_ = nullptr;  // aligned start inside [base_, base_ + reserved_)
    std::size_t size_ = 0;
};

}  // namespace mimobox::memory
