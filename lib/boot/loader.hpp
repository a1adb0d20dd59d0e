// Copies a parsed kernel and an initramfs into guest memory and decides where the initramfs goes.
#pragma once

#include "boot/kernel_image.hpp"
#include "boot/zero_page.hpp"
#include "memory/guest_memory.hpp"

namespace mimobox::boot {

/// Highest page-aligned address below both the end of low RAM and initrd_addr_max, above the
/// kernel's reserve_end. microvm_errc::kernel_does_not_fit / initramfs_does_not_fit otherwise.
boost::system::result<initrd_placement> place_initrd(const kernel_image& image, std::uint64_t memory_size,
                                                     std::uint64_t initrd_size);

/// Copies each segment (zeroing memory_size - file_size) into guest memory.
boost::system::error_code load_kernel(const memory::guest_memory& mem, const kernel_image& image,
                                      std::span<const std::uint8_t> file);

}  // namespace mimobox::boot
