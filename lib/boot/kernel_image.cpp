#include "boot/kernel_image.hpp"

#include "mimobox/vm/error.hpp"

#include <algorithm>
#include <cstring>
#include <elf.h>

namespace mimobox::boot {

using vm::microvm_errc;

namespace {

template <class T>
T load_le(std::span<const std::uint8_t> bytes, std::size_t offset) {
    T value{};
    std::memcpy(&value, bytes.data() + offset, sizeof(T));  // x86-64 host: already little-endian
    return value;
}

// bzImage setup header offsets (Documentation/arch/x86/boot.rst).
constexpr std::size_t setup_sects_off = 0x1f1;
constexpr std::size_t boot_flag_off = 0x1fe;
constexpr std::size_t jump_off = 0x201;
constexpr std::size_t header_magic_off = 0x202;
constexpr std::size_t version_off = 0x206;
constexpr std::size_t loadflags_off = 0x211;
constexpr std::size_t initrd_addr_max_off = 0x22c;
constexpr std::size_t xloadflags_off = 0x236;
constexpr std::size_t cmdline_size_off = 0x238;
constexpr std::size_t pref_address_off = 0x258;
constexpr std::size_t init_size_off = 0x260;
constexpr std::size_t header_min_end = 0x264;  // through init_size
constexpr std::uint32_t hdrs_magic = 0x53726448;
constexpr std::uint8_t loaded_high = 0x01;
constexpr std::uint16_t xlf_kernel_64 = 0x01;
constexpr std::uint64_t bzimage_load_addr = 0x100000;

}  // namespace

boost::system::result<kernel_image> parse_bzimage(std::span<const std::uint8_t> file) {
    if (file.size() < header_min_end) return microvm_errc::truncated_kernel;
    if (load_le<std::uint16_t>(file, boot_flag_off) != 0xaa55 ||
        load_le<std::uint32_t>(file, header_magic_off) != hdrs_magic)
        return microvm_errc::not_a_kernel;

    kernel_image img;
    img.kind = kernel_image::format::bzimage;
    img.protocol_version = load_le<std::uint16_t>(file, version_off);
    if (img.protocol_version < 0x020c) return microvm_errc::boot_protocol_too_old;
    if (!(file[loadflags_off] & loaded_high) || !(load_le<std::uint16_t>(file, xloadflags_off) & xlf_kernel_64))
        return microvm_errc::boot_protocol_too_old;

    std::size_t header_end = 0x202 + file[jump_off];
    if (header_end > file.size() || header_end < header_min_end) return microvm_errc::truncated_kernel;
    std::uint64_t setup_sects = file[setup_sects_off] == 0 ? 4 : file[setup_sects_off];
    std::uint64_t kernel_offset = (setup_sects + 1) * 512;
    if (kernel_offset >= file.size()) return microvm_errc::truncated_kernel;
    // syssize (0x1f4) counts the protected-mode code in 16-byte paragraphs.
    std::uint64_t syssize = std::uint64_t(load_le<std::uint32_t>(file, 0x1f4)) * 16;
    if (syssize == 0 || kernel_offset + syssize > file.size()) return microvm_errc::truncated_kernel;

    img.cmdline_size = load_le<std::uint32_t>(file, cmdline_size_off);
    img.initrd_addr_max = load_le<std::uint32_t>(file, initrd_addr_max_off);
    std::uint64_t init_size = load_le<std::uint32_t>(file, init_size_off);
    std::uint64_t pref_address = load_le<std::uint64_t>(file, pref_address_off);
    img.segments.push_back({bzimage_load_addr, kernel_offset, file.size() - kernel_offset, file.size() - kernel_offset});
    img.entry_64 = bzimage_load_addr + 0x200;
    // The decompressor runs in place or at pref_address (non-relocatable kernels) and needs
    // init_size bytes there.
    img.reserve_end = std::max(bzimage_load_addr + std::max<std::uint64_t>(init_size, file.size() - kernel_offset),
                               pref_address + init_size);
    img.setup_header.assign(file.begin() + setup_sects_off, file.begin() + header_end);
    return img;
}

boost::system::result<kernel_image> parse_elf(std::span<const std::uint8_t> file) {
    if (file.size() < sizeof(Elf64_Ehdr)) return microvm_errc::truncated_kernel;
    auto eh = load_le<Elf64_Ehdr>(file, 0);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return microvm_errc::not_a_kernel;
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
        eh.e_type != ET_EXEC || eh.e_phentsize != sizeof(Elf64_Phdr))
        return microvm_errc::unsupported_elf;
    if (eh.e_phnum == 0 || eh.e_phnum > 64) return microvm_errc::unsupported_elf;
    if (eh.e_phoff > file.size() || std::uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > file.size() - eh.e_phoff)
        return microvm_errc::truncated_kernel;

    kernel_image img;
    img.kind = kernel_image::format::elf;
    img.protocol_version = 0x020c;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        auto ph = load_le<Elf64_Phdr>(file, eh.e_phoff + i * sizeof(Elf64_Phdr));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset)
            return microvm_errc::truncated_kernel;
        if (ph.p_paddr + ph.p_memsz < ph.p_paddr) return microvm_errc::unsupported_elf;
        img.segments.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
        img.reserve_end = std::max(img.reserve_end, ph.p_paddr + ph.p_memsz);
    }
    if (img.segments.empty()) return microvm_errc::unsupported_elf;
    // vmlinux's e_entry is the physical address of startup_64.
    img.entry_64 = eh.e_entry;
    bool entry_in_segment = std::any_of(img.segments.begin(), img.segments.end(), [&](const load_segment& s) {
        return img.entry_64 >= s.guest_addr && img.entry_64 < s.guest_addr + s.file_size;
    });
    if (!entry_in_segment) return microvm_errc::unsupported_elf;
    return img;
}

boost::system::result<kernel_image> parse_kernel(std::span<const std::uint8_t> file) {
    if (file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0) return parse_elf(file);
    if (file.size() >= boot_flag_off + 2 && load_le<std::uint16_t>(file, boot_flag_off) == 0xaa55)
        return parse_bzimage(file);
    return microvm_errc::not_a_kernel;
}

}  // namespace mimobox::boot
