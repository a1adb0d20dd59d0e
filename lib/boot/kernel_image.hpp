// Parsing a guest kernel file (bzImage or ELF vmlinux) into what the loader needs. Pure: works
// on bytes, touches no guest memory, so every malformed-image case is unit-testable.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace mimobox::boot {

struct load_segment {
    std::uint64_t guest_addr = 0;   // where the bytes go
    std::uint64_t file_offset = 0;  // where they come from in the image
    std::uint64_t file_size = 0;
    std::uint64_t memory_size = 0;  // >= file_size; the rest is zeroed
};

struct kernel_image {
    enum class format { bzimage, elf };
    format kind = format::bzimage;
    std::vector<load_segment> segments;
    std::uint64_t entry_64 = 0;            // guest-physical 64-bit entry point
    std::uint64_t reserve_end = 0;         // first byte past what the kernel needs while booting
    std::uint32_t cmdline_size = 2048;     // max command line length without NUL
    std::uint32_t initrd_addr_max = 0x37ffffff;
    std::uint16_t protocol_version = 0;
    std::vector<std::uint8_t> setup_header;  // bytes 0x1f1.. of the bzImage's setup, empty for ELF
};

/// bzImage: boot_flag, "HdrS", protocol >= 2.12, LOADED_HIGH and XLF_KERNEL_64, sizes inside the file.
boost::system::result<kernel_image> parse_bzimage(std::span<const std::uint8_t> file);
/// ELF64, little-endian, EM_X86_64, ET_EXEC, with PT_LOAD segments inside the file.
boost::system::result<kernel_image> parse_elf(std::span<const std::uint8_t> file);
/// Dispatches on the magic; anything else is microvm_errc::not_a_kernel.
boost::system::result<kernel_image> parse_kernel(std::span<const std::uint8_t> file);

}  // namespace mimobox::boot
