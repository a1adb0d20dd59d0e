#include "boot/loader.hpp"

#include "boot/layout.hpp"
#include "mimobox/vm/error.hpp"

#include <algorithm>
#include <cstring>

namespace mimobox::boot {

using vm::microvm_errc;

boost::system::result<initrd_placement> place_initrd(const kernel_image& image, std::uint64_t memory_size,
                                                     std::uint64_t initrd_size) {
    const std::uint64_t low_end = std::min(memory_size, layout::mmio_gap_start);
    if (image.reserve_end > low_end) return microvm_errc::kernel_does_not_fit;
    const std::uint64_t top = std::min(low_end, std::uint64_t(image.initrd_addr_max) + 1);
    if (initrd_size > top || ((top - initrd_size) & ~std::uint64_t(0xfff)) < image.reserve_end)
        return microvm_errc::initramfs_does_not_fit;
    return initrd_placement{(top - initrd_size) & ~std::uint64_t(0xfff), initrd_size};
}

boost::system::error_code load_kernel(const memory::guest_memory& mem, const kernel_image& image,
                                      std::span<const std::uint8_t> file) {
    for (const auto& seg : image.segments) {
        // parse_* checked that the file range exists; the guest range is checked here.
        auto dst = mem.host_span(memory::guest_addr(seg.guest_addr), seg.memory_size);
        if (!dst) return microvm_errc::kernel_does_not_fit;
        std::memcpy(dst->data(), file.data() + seg.file_offset, seg.file_size);
        std::memset(dst->data() + seg.file_size, 0, seg.memory_size - seg.file_size);
    }
    return {};
}

}  // namespace mimobox::boot
