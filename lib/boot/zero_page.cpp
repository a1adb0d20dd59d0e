#include "boot/zero_page.hpp"

#include "boot/layout.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace mimobox::boot {

std::vector<e820_entry> e820_map(std::uint64_t memory_size) {
    std::vector<e820_entry> map;
    map.push_back({0, layout::ebda_start, e820_ram});
    map.push_back({layout::ebda_start, 0x400, e820_reserved});
    std::uint64_t low_end = std::min(memory_size, layout::mmio_gap_start);
    map.push_back({layout::high_memory, low_end - layout::high_memory, e820_ram});
    if (memory_size > layout::mmio_gap_start)
        map.push_back({layout::mmio_gap_end, memory_size - layout::mmio_gap_start, e820_ram});
    return map;
}

namespace {
// struct boot_params offsets (Documentation/arch/x86/zero-page.rst).
constexpr std::size_t e820_entries_off = 0x1e8;
constexpr std::size_t setup_header_off = 0x1f1;
constexpr std::size_t type_of_loader_off = 0x210;
constexpr std::size_t loadflags_off = 0x211;
constexpr std::size_t ramdisk_image_off = 0x218;
constexpr std::size_t ramdisk_size_off = 0x21c;
constexpr std::size_t heap_end_ptr_off = 0x224;
constexpr std::size_t cmd_line_ptr_off = 0x228;
constexpr std::size_t e820_table_off = 0x2d0;
constexpr std::size_t e820_max = 128;
constexpr std::size_t zero_page_size = 4096;

template <class T>
void store(std::array<std::uint8_t, zero_page_size>& page, std::size_t off, T v) {
    std::memcpy(page.data() + off, &v, sizeof v);
}
}  // namespace

boost::system::error_code write_zero_page(const memory::guest_memory& mem, const kernel_image& image,
                                          initrd_placement initrd,
                                          const std::vector<e820_entry>& e820) {
    std::array<std::uint8_t, zero_page_size> page{};
    if (!image.setup_header.empty()) {
        std::size_t n = std::min(image.setup_header.size(), zero_page_size - setup_header_off);
        std::memcpy(page.data() + setup_header_off, image.setup_header.data(), n);
    } else {
        // ELF vmlinux has no setup header: write the fields the 64-bit entry reads.
        store<std::uint16_t>(page, 0x1fe, 0xaa55);
        store<std::uint32_t>(page, 0x202, 0x53726448);
        store<std::uint16_t>(page, 0x206, image.protocol_version);
        store<std::uint32_t>(page, 0x230, 0x1000000);  // kernel_alignment
        store<std::uint32_t>(page, 0x238, image.cmdline_size);
    }
    page[type_of_loader_off] = 0xff;
    page[loadflags_off] |= 0x01 | 0x80;  // LOADED_HIGH | CAN_USE_HEAP
    store<std::uint16_t>(page, heap_end_ptr_off, 0xfe00);
    store<std::uint32_t>(page, cmd_line_ptr_off, static_cast<std::uint32_t>(layout::cmdline));
    store<std::uint32_t>(page, ramdisk_image_off, static_cast<std::uint32_t>(initrd.addr));
    store<std::uint32_t>(page, ramdisk_size_off, static_cast<std::uint32_t>(initrd.size));
    std::size_t n = std::min(e820.size(), e820_max);
    page[e820_entries_off] = static_cast<std::uint8_t>(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t off = e820_table_off + i * 20;  // packed {u64 addr; u64 size; u32 type}
        store(page, off, e820[i].addr);
        store(page, off + 8, e820[i].size);
        store(page, off + 16, e820[i].type);
    }
    return mem.write(memory::guest_addr(layout::zero_page), std::as_bytes(std::span(page)));
}

}  // namespace mimobox::boot
