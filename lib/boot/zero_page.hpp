// The Linux zero page (struct boot_params) and the e820 memory map it carries.
#pragma once

#include "boot/kernel_image.hpp"
#include "memory/guest_memory.hpp"

#include <cstdint>
#include <vector>

namespace mimobox::boot {

struct e820_entry {
    std::uint64_t addr;
    std::uint64_t size;
    std::uint32_t type;  // 1 RAM, 2 reserved
};

inline constexpr std::uint32_t e820_ram = 1;
inline constexpr std::uint32_t e820_reserved = 2;

/// RAM below the EBDA, the EBDA reserved for the MP table, RAM from 1 MiB to the MMIO gap and
/// RAM above 4 GiB for the rest.
std::vector<e820_entry> e820_map(std::uint64_t memory_size);

struct initrd_placement {
    std::uint64_t addr = 0;
    std::uint64_t size = 0;
};

/// Fills the zero page at layout::zero_page: the image's setup header (or a synthesized one for
/// ELF), loader type, command line pointer and size, initrd, e820.
boost::system::error_code write_zero_page(const memory::guest_memory& mem, const kernel_image& image,
                                          initrd_placement initrd,
                                          const std::vector<e820_entry>& e820);

}  // namespace mimobox::boot
